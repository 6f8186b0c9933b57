"""Whether git ignores a path, with git's semantics, read without starting ``git``.

What git does (and this module reproduces; ``tests/unit/test_classification_leaks.py``
checks it against ``git check-ignore``):

* sources, highest precedence first: ``.gitignore`` in the path's own directory and each
  directory above it up to the root, then ``$GIT_COMMON_DIR/info/exclude``, then
  ``core.excludesFile`` (default ``$XDG_CONFIG_HOME/git/ignore``); within one file the
  last matching line wins;
* ``!pattern`` re-includes, except below an excluded directory: once a directory is
  excluded, nothing in it can be re-included (git does not even read its ``.gitignore``);
* a pattern without a slash (a trailing one aside) matches the name at any depth below
  its file; one with a slash is relative to its file's directory; a trailing ``/``
  matches directories only; ``*``/``?`` never match ``/``; ``**`` as in git;
* ``core.ignorecase = true`` makes matching case-insensitive.

Whether the file is *tracked* is git's business (a tracked file is never ignored):
:func:`is_tracked` asks ``git ls-files``, and callers only need it for paths that a
pattern ignores.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from onbox.classification.patterns import LazyRegex, literal_parts

logger = logging.getLogger(__name__)

GIT_TIMEOUT_S = 10.0


@dataclass
class _Rule:
    base: str  # directory of the ignore file, relative to root: "" or "a/b/"
    negated: bool
    basename_only: bool
    must_be_dir: bool
    regex: LazyRegex
    literals: tuple[str, ...]
    source: str


@dataclass
class IgnoreFile:
    """The parsed patterns of one ignore file."""

    rules: list[_Rule] = field(default_factory=list)


def parse_ignore(text: str, base: str, display: str, *, ignore_case: bool) -> IgnoreFile:
    """Parse one ignore file whose directory is ``base`` (``""`` or ``"a/b/"``)."""
    result = IgnoreFile()
    flags = re.IGNORECASE if ignore_case else 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line or line.startswith("#"):
            continue
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]  # trailing spaces count only when escaped
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        must_be_dir = line.endswith("/")
        body = line[:-1] if must_be_dir else line
        if not body:
            continue
        basename_only = "/" not in body
        if body.startswith("/"):
            body = body[1:]
        literals = literal_parts(body)
        result.rules.append(
            _Rule(
                base=base,
                negated=negated,
                basename_only=basename_only,
                must_be_dir=must_be_dir,
                regex=LazyRegex(body, flags),
                literals=tuple(p.lower() for p in literals) if ignore_case else literals,
                source=f"{display}:{number}",
            )
        )
    return result


def ignore_files_for(root: Path, rel_path: str) -> list[tuple[str, str]]:
    """(absolute ``.gitignore``, base) pairs that can affect ``rel_path``, root first."""
    pairs = [(str(root / ".gitignore"), "")]
    parts = rel_path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        base = "/".join(parts[:depth]) + "/"
        pairs.append((str(root / base / ".gitignore"), base))
    return pairs


def _verdict(
    path: str, is_dir: bool, files: list[IgnoreFile], *, ignore_case: bool
) -> _Rule | None:
    """The deciding rule for ``path`` among ``files`` (highest precedence first)."""
    basename = path.rsplit("/", 1)[-1]
    for ignore_file in files:
        for rule in reversed(ignore_file.rules):
            if rule.must_be_dir and not is_dir:
                continue
            if rule.base and not (
                path.lower().startswith(rule.base.lower())
                if ignore_case
                else path.startswith(rule.base)
            ):
                continue
            subject = basename if rule.basename_only else path[len(rule.base) :]
            probe = subject.lower() if ignore_case else subject
            if any(part not in probe for part in rule.literals):
                continue
            if rule.regex.fullmatch(subject) is not None:
                return rule
    return None


def ignored_by(
    rel_path: str,
    directories: list[IgnoreFile | None],
    global_files: list[IgnoreFile | None],
    *,
    ignore_case: bool = False,
) -> str | None:
    """The ``file:line`` of the pattern that ignores ``rel_path``, or ``None``.

    ``directories`` are the ``.gitignore`` files from :func:`ignore_files_for` (root
    first, ``None`` where missing); ``global_files`` are ``info/exclude`` then
    ``core.excludesFile``. Tracking is not considered here.
    """
    parts = rel_path.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        # .gitignore files of the directories above this component, deepest first.
        candidates = [f for f in reversed(directories[:depth]) if f is not None]
        candidates += [f for f in global_files if f is not None]
        rule = _verdict(prefix, depth < len(parts), candidates, ignore_case=ignore_case)
        if rule is not None and not rule.negated:
            return rule.source  # an excluded directory excludes all it holds
    return None


def excludes_file(configured: str | None) -> str:
    """``core.excludesFile``, or git's default ``$XDG_CONFIG_HOME/git/ignore``."""
    if configured:
        return os.path.expanduser(configured)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(xdg, "git", "ignore")


def is_tracked(root: Path, rel_path: str) -> bool:
    """Whether git's index holds ``rel_path``; ``False`` when git cannot say (fail closed)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--", f":(literal){rel_path}"],
            capture_output=True,
            check=True,
            timeout=GIT_TIMEOUT_S,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning(
            "git ls-files failed in %s (%s): treating %s as untracked", root, exc, rel_path
        )
        return False
    return bool(out.strip(b"\0"))
