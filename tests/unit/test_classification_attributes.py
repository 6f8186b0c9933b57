"""``.gitattributes`` semantics, checked against ``git check-attr`` on generated cases."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from onbox.classification.gitattributes import SET, read_attributes

ATTRS = ("onbox-label", "onbox-tags")
PATTERNS = [
    "*",
    "*.py",
    "*.txt",
    "*.md",
    "a/*.py",
    "/a/*.py",
    "a/**",
    "a/",
    "a",
    "a/**/c.py",
    "**/b/*.py",
    "b",
    "b/",
    "b/**",
    "[ab]*.py",
    "[!a]*.py",
    "x?.py",
    "**/*.md",
    "/top.py",
    "top.py",
    "sub/**/deep",
    "a/b/*",
    "*/c.py",
    "docs/**/*.md",
    "A/*.py",
    "**/c.py",
    "a/b",
    "/b/c.py",
    "c.py",
    "**",
    "a/**/b/**",
    '"quoted name.py"',
]
STATES = [
    "onbox-label=public",
    "onbox-label=internal",
    "onbox-label=restricted",
    "-onbox-label",
    "!onbox-label",
    "onbox-label",
    "onbox-tags=x,y",
    "onbox-tags=pay",
    "-onbox-tags",
    "onbox-label=internal onbox-tags=z",
    "secret",
    "other=1",
]
PATHS = [
    "top.py",
    "a.py",
    "x1.py",
    "README.md",
    "a/x.py",
    "a/b/c.py",
    "a/b/x.txt",
    "a/b/d/c.py",
    "b/c.py",
    "b/x.txt",
    "c/b/y.py",
    "docs/README.md",
    "docs/deep/er/guide.md",
    "sub/q/deep",
    "sub/deep",
    "A/x.py",
    "a/B/c.py",
    "quoted name.py",
    "a/quoted name.py",
    "bb.py",
    "a/a.py",
    "z/a/x.py",
]
DIRS = ["", "a/", "a/b/", "b/", "docs/"]


def git_env(tmp_path: Path) -> dict[str, str]:
    """An environment where no global or system attributes file can interfere."""
    env = dict(os.environ)
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"), GIT_CONFIG_NOSYSTEM="1")
    return env


def check_attr(root: Path, paths: list[str], env: dict[str, str]) -> dict[str, dict[str, str]]:
    """What ``git check-attr`` says about the watched attributes of ``paths``."""
    out = subprocess.run(
        ["git", "-C", str(root), "check-attr", "-z", "--stdin", *ATTRS],
        input="\0".join(paths).encode() + b"\0",
        capture_output=True,
        check=True,
        env=env,
    ).stdout.decode()
    fields = out.split("\0")
    result: dict[str, dict[str, str]] = {p: {} for p in paths}
    for i in range(0, len(fields) - 1, 3):
        path, attr, info = fields[i : i + 3]
        if info not in ("unset", "unspecified"):
            result[path][attr] = info
    return result


def ours(root: Path, paths: list[str], ignore_case: bool = False) -> dict[str, dict[str, str]]:
    """What this module says, in ``git check-attr`` terms."""
    info = str(root / ".git" / "info" / "attributes")
    result = {}
    for path in paths:
        found = read_attributes(root, path, info, ignore_case=ignore_case)
        result[path] = {k: ("set" if v.value == SET else v.value) for k, v in found.items()}
    return result


def make_repo(root: Path, env: dict[str, str], seed: int) -> None:
    """A repository with random attribute files at several depths."""
    rng = random.Random(seed)
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    for directory in [*DIRS, ".git/info/"]:
        lines = []
        if directory == "":
            lines.append("[attr]secret onbox-label=restricted onbox-tags=s")
        for _ in range(rng.randint(2, 9)):
            lines.append(f"{rng.choice(PATTERNS)}\t{rng.choice(STATES)}")
        if rng.random() < 0.3:
            lines.append("# a comment\n\n!*.py onbox-label=public")
        target = root / directory
        target.mkdir(parents=True, exist_ok=True)
        name = "attributes" if directory == ".git/info/" else ".gitattributes"
        (target / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("seed", range(60))
def test_matches_git_check_attr(tmp_path: Path, seed: int) -> None:
    env = git_env(tmp_path)
    root = tmp_path / "repo"
    make_repo(root, env, seed)
    expected = check_attr(root, PATHS, env)
    assert ours(root, PATHS) == expected


@pytest.mark.parametrize("seed", range(6))
def test_matches_git_check_attr_ignorecase(tmp_path: Path, seed: int) -> None:
    env = git_env(tmp_path)
    root = tmp_path / "repo"
    make_repo(root, env, 100 + seed)
    subprocess.run(
        ["git", "-C", str(root), "config", "core.ignorecase", "true"], check=True, env=env
    )
    assert ours(root, PATHS, ignore_case=True) == check_attr(root, PATHS, env)


@pytest.mark.parametrize(
    ("lines", "path", "expected"),
    [
        # dir/ never matches the files inside; dir/** does
        (["secret/ onbox-label=restricted"], "secret/key.txt", {}),
        (["secret/** onbox-label=restricted"], "secret/key.txt", {"onbox-label": "restricted"}),
        # no slash: basename at any depth
        (["*.pem onbox-label=restricted"], "deep/er/x.pem", {"onbox-label": "restricted"}),
        # last match wins, per attribute
        (
            ["*.py onbox-label=internal onbox-tags=a", "x.py onbox-label=public"],
            "x.py",
            {"onbox-label": "public", "onbox-tags": "a"},
        ),
        (["*.py onbox-label=internal", "*.py -onbox-label"], "x.py", {}),
        # case-sensitive without core.ignorecase
        (["Docs/** onbox-label=public"], "docs/x.md", {}),
    ],
)
def test_documented_semantics(
    tmp_path: Path, lines: list[str], path: str, expected: dict[str, str]
) -> None:
    env = git_env(tmp_path)
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    (root / ".gitattributes").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert ours(root, [path]) == {path: expected}
    assert check_attr(root, [path], env) == {path: expected}


def test_reason_source_points_at_line(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=git_env(tmp_path))
    (root / "a").mkdir()
    (root / "a" / ".gitattributes").write_text("# c\n*.py onbox-tags=pay\n", encoding="utf-8")
    found = read_attributes(root, "a/x.py", str(root / ".git" / "info" / "attributes"))
    assert found["onbox-tags"].source == "a/.gitattributes:2"
