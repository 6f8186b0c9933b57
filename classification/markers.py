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

logger = logging.getLogger(__name__)

MARKER_LINES = 5
_MARKER = re.compile(
    r"(?:#|//|/\*+|<!--|--|;|%|\*|\{-|\(\*|\bREM\b)\s*onbox\s*:\s*([A-Za-z0-9_.-]+)",
    re.IGNORECASE,
)
_REPO_FILE_KEYS = {"tags", "label"}


@dataclass(frozen=True)
class Marker:
    """A manual label marker found in a file's first lines."""

    label: str
    line: int


def find_marker(text: str) -> Marker | None:
    """The first ``onbox: <label>`` comment in the first :data:`MARKER_LINES` lines."""
    head = text[:4096].split("\n", MARKER_LINES)[:MARKER_LINES]
    for number, line in enumerate(head, start=1):
        match = _MARKER.search(line)
        if match:
            return Marker(match.group(1), number)
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
