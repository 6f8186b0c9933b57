"""Small repo-local signals: the ``onbox: <label>`` marker and the in-repo ``.onbox.toml``.

A marker is a comment in the first :data:`MARKER_LINES` lines of a file::

    # onbox: restricted
    // onbox: internal
    /* onbox: restricted */

``.onbox.toml`` at the repository root may add tags (and raise the label)::

    tags = ["payments", "pci"]
    label = "restricted"      # optional; can only raise
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from typing import AnyStr

logger = logging.getLogger(__name__)

MARKER_LINES = 5
_MARKER = re.compile(
    r"(?:#|//|/\*+|<!--|--|;|%|\*|\{-|\(\*|\bREM\b)\s*onbox\s*:\s*([A-Za-z0-9_.-]+)",
    re.IGNORECASE,
)
_CANDIDATE = re.compile(r"onbox\s*:")
_CANDIDATE_BYTES = re.compile(rb"onbox\s*:")
_WINDOW = 64  # bytes around a candidate: the comment token before, the label after
MAX_CANDIDATES_PER_LINE = 10_000
_REPO_FILE_KEYS = {"tags", "label"}


@dataclass(frozen=True)
class Marker:
    """A manual label marker found in a file's first lines."""

    label: str
    line: int


def find_marker(text: str) -> Marker | None:
    """The first ``onbox: <label>`` comment in the first :data:`MARKER_LINES` lines.

    Lines count whatever their length (a 5 KB ``__all__ = [...]`` line does not hide a
    marker on line 2); nothing after the fifth line break is read.
    """
    start = 0
    for number in range(1, MARKER_LINES + 1):
        end = text.find("\n", start)
        line = text[start:] if end == -1 else text[start:end]
        label = _marker_in(line)
        if label is not None:
            return Marker(label, number)
        if end == -1:
            break
        start = end + 1
    return None


def _marker_in(line: str) -> str | None:
    """The label of the first marker in ``line``; fast on a megabyte-long minified line.

    A case-insensitive regex over the whole line costs tens of milliseconds per 5 MB; a
    literal scan of the line lower-cased (as bytes unless it is ASCII, so that offsets
    stay put) finds the few ``onbox:`` candidates, and the full marker pattern runs
    only in a small window around each.
    """
    if line.isascii():
        return _first_marker(line, line.lower(), _CANDIDATE)
    data = line.encode("utf-8", "surrogatepass")
    return _first_marker(data, data.lower(), _CANDIDATE_BYTES)


def _first_marker(line: AnyStr, lowered: AnyStr, candidates: re.Pattern[AnyStr]) -> str | None:
    for count, candidate in enumerate(candidates.finditer(lowered)):
        if count >= MAX_CANDIDATES_PER_LINE:
            break
        window = line[max(0, candidate.start() - _WINDOW) : candidate.end() + _WINDOW]
        # A bytes window cut inside a multi-byte character loses only that character.
        text = window if isinstance(window, str) else window.decode("utf-8", "ignore")
        match = _MARKER.search(text)
        if match:
            return match.group(1)
    return None


class RepoFileError(ValueError):
    """An ``.onbox.toml`` that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class RepoFile:
    """The parsed ``.onbox.toml`` of a repository."""

    tags: tuple[str, ...] = ()
    label: str | None = None
    tags_line: int = 0
    label_line: int = 0


def parse_repo_file(text: str) -> RepoFile:
    """Parse ``.onbox.toml``; raise :class:`RepoFileError` on invalid content."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RepoFileError(f"not valid TOML: {exc}") from None
    unknown = set(doc) - _REPO_FILE_KEYS
    if unknown:
        raise RepoFileError(f"unknown keys {sorted(unknown)}; allowed: tags, label")
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RepoFileError("'tags' must be a list of strings")
    label = doc.get("label")
    if label is not None and not isinstance(label, str):
        raise RepoFileError("'label' must be a string")

    def line_of(key: str) -> int:
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(rf"\s*{key}\s*=", line):
                return number
        return 0

    return RepoFile(tuple(tags), label, line_of("tags"), line_of("label"))
