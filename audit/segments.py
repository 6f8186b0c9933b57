"""Segment files: naming, listing and reading the last line of one.

Segments are ``segment-00000001.jsonl``, ``segment-00000002.jsonl``, ... in the journal
directory; the highest number is the one being appended to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SEGMENT_RE = re.compile(r"^segment-(\d{8})\.jsonl$")
LOCK_NAME = ".lock"


def segment_name(index: int) -> str:
    """File name of segment ``index`` (1-based)."""
    return f"segment-{index:08d}.jsonl"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """``(index, path)`` of every segment in ``directory``, in order."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        match = SEGMENT_RE.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    found.sort()
    return found


@dataclass(frozen=True)
class Tail:
    """The end of a segment: its last complete line and any torn bytes after it."""

    last_line: bytes | None  # without the newline; None when no complete line exists
    last_line_offset: int  # where the last complete line starts
    complete_end: int  # offset just past the last newline (where torn bytes begin)
    size: int  # file size read


def read_tail(fd: int, start: int, size: int) -> Tail:
    """Find the last complete line between ``start`` and ``size`` of an open segment.

    Reads backwards in growing windows so that opening a large segment stays cheap.
    """
    window = 64 * 1024
    while True:
        lo = max(start, size - window)
        data = os.pread(fd, size - lo, lo)
        end_nl = data.rfind(b"\n")
        if end_nl >= 0:
            prev_nl = data.rfind(b"\n", 0, end_nl)
            if prev_nl >= 0 or lo == start:
                line_start = prev_nl + 1
                return Tail(
                    last_line=data[line_start:end_nl],
                    last_line_offset=lo + line_start,
                    complete_end=lo + end_nl + 1,
                    size=size,
                )
        elif lo == start:
            return Tail(None, start, start, size)
        window *= 4
