"""Real git repositories for tests: one ``git`` helper and a repository factory."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The identity commits are made with, so tests never depend on the machine's git config.
IDENTITY = ("Onbox Test", "test@example.com")


def git(repo: Path, *args: str, identity: tuple[str, str] = IDENTITY) -> str:
    """Run git in ``repo``; its stdout, stripped. A failure raises with git's stderr."""
    name, email = identity
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", f"user.name={name}", "-c", f"user.email={email}", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def make_repo(
    root: Path, files: dict[str, str] | None = None, *, origin: str | None = None
) -> Path:
    """A git repository at ``root`` holding ``files`` (committed when there are any)."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    if origin:
        git(root, "remote", "add", "origin", origin)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    if files:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "init")
    return root
