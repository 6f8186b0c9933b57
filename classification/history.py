"""The root commits of a checkout's history: the identity a remote URL cannot fake.

A developer can point ``origin`` anywhere, but cannot change which commits ``HEAD``
descends from without making new history. Policy ``[[repos]]`` rules may pin
``root_commits``; :func:`root_commits` gives the checkout's, from
``git rev-list --max-parents=0 HEAD``, cached per repository and keyed by the commit
``HEAD`` resolves to. Finding that commit reads ``HEAD``, the branch's ref file and
``packed-refs``; those three files are what a cached decision watches, so a warm
decision costs three ``stat`` calls and never starts git.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from onbox.classification.repo import Fingerprint, Repository, fingerprint

logger = logging.getLogger(__name__)

GIT_TIMEOUT_S = 30.0
MAX_CACHED = 256
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


@dataclass(frozen=True)
class History:
    """What the checkout's ``HEAD`` descends from."""

    head: str | None  # the commit HEAD resolves to; None for an unborn branch
    roots: tuple[str, ...]  # sorted root commits; () when there is no commit or git failed
    error: str = ""  # why the roots are unknown, for a reason


class RootCommitCache:
    """Root commits per repository, keyed by the commit ``HEAD`` resolves to; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roots: dict[tuple[str, str], History] = {}
        self._heads: dict[str, tuple[tuple[tuple[str, Fingerprint], ...], str | None]] = {}

    def clear(self) -> None:
        """Forget every answer."""
        with self._lock:
            self._roots.clear()
            self._heads.clear()

    def history(self, repo: Repository, seen: list[tuple[str, Fingerprint]]) -> History:
        """The history of ``repo``'s ``HEAD``; files read are added to ``seen``."""
        head = self._head(repo, seen)
        if head is None:
            return History(None, (), "HEAD has no commit yet")
        key = (str(repo.common_dir), head)
        with self._lock:
            cached = self._roots.get(key)
        if cached is not None:
            return cached
        found = _rev_list_roots(repo.root, head)
        with self._lock:
            if len(self._roots) >= MAX_CACHED:
                self._roots.clear()
            if not found.error:
                self._roots[key] = found
        return found

    def _head(self, repo: Repository, seen: list[tuple[str, Fingerprint]]) -> str | None:
        """:func:`resolve_head`, re-read only when one of the ref files' stat changes."""
        key = str(repo.git_dir)
        with self._lock:
            cached = self._heads.get(key)
        if cached is not None:
            files, head = cached
            now = tuple((path, fingerprint(path)) for path, _ in files)
            if now == files and all(fp is not None for p, fp in now if p.endswith("HEAD")):
                seen.extend(now)
                return head
        read: list[tuple[str, Fingerprint]] = []
        head = resolve_head(repo, read)
        seen.extend(read)
        with self._lock:
            if len(self._heads) >= MAX_CACHED:
                self._heads.clear()
            self._heads[key] = (tuple(read), head)
        return head


def resolve_head(repo: Repository, seen: list[tuple[str, Fingerprint]]) -> str | None:
    """The commit ``HEAD`` points to, read from the ref files (no git); ``None`` if unborn."""
    head_path = str(repo.git_dir / "HEAD")
    seen.append((head_path, fingerprint(head_path)))
    try:
        content = Path(head_path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    for _ in range(5):  # symbolic refs may chain; git allows a few levels
        if not content.startswith("ref:"):
            return content.lower() if _SHA.match(content.lower()) else None
        ref = content[len("ref:") :].strip()
        loose = str(repo.common_dir / ref)
        if ref.startswith(("refs/bisect/", "refs/worktree/", "refs/rewritten/")):
            loose = str(repo.git_dir / ref)  # per-worktree refs
        packed = str(repo.common_dir / "packed-refs")
        seen.append((loose, fingerprint(loose)))
        seen.append((packed, fingerprint(packed)))
        try:
            content = Path(loose).read_text(encoding="utf-8", errors="replace").strip()
            continue
        except OSError:
            pass
        return _packed_ref(packed, ref)
    return None


def _packed_ref(packed: str, ref: str) -> str | None:
    try:
        text = Path(packed).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref and _SHA.match(sha.lower()):
            return sha.lower()
    return None


def _rev_list_roots(root: Path, head: str) -> History:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-list", "--max-parents=0", head, "--"],
            capture_output=True,
            check=True,
            timeout=GIT_TIMEOUT_S,
            text=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("git rev-list failed in %s: %s", root, exc)
        return History(head, (), f"git could not list the root commits ({type(exc).__name__})")
    roots = tuple(sorted(line.strip().lower() for line in out.splitlines() if line.strip()))
    if not roots:
        return History(head, (), "git listed no root commit")
    return History(head, roots)
