"""Segment files: naming, listing and reading the last line of one.

Segments are ``segment-00000001.jsonl``, ``segment-00000002.jsonl``, ... in the journal
directory; the highest number is the one being appended to. Also here: the inter-process writer
lock and the small file helpers the writer needs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from onbox.audit.entry import HEADER_KIND
from onbox.audit.errors import JournalUnwritable

try:
    import fcntl

    _HAVE_FCNTL = True
except ImportError:  # pragma: no cover - Windows
    _HAVE_FCNTL = False

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


class ProcessLock:
    """An exclusive lock shared by every process using the journal directory."""

    def __init__(self, path: Path) -> None:
        self._path = path
        if _HAVE_FCNTL:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        else:  # pragma: no cover - Windows
            import filelock

            self._filelock = filelock.FileLock(str(path))

    def acquire(self) -> None:
        """Block until this process holds the lock."""
        if _HAVE_FCNTL:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        else:  # pragma: no cover
            self._filelock.acquire()

    def release(self) -> None:
        """Let the next writer in."""
        if _HAVE_FCNTL:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        else:  # pragma: no cover
            self._filelock.release()

    def close(self) -> None:
        """Release the lock file descriptor."""
        if _HAVE_FCNTL:
            os.close(self._fd)


def unwritable(path: Path, exc: OSError) -> JournalUnwritable:
    """The error to raise when writing ``path`` failed with ``exc``; says what to do."""
    what = (
        "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else str(exc)
    )
    return JournalUnwritable(
        f"cannot write the audit journal at {path}: {what}. Free disk space or fix the "
        "directory's permissions; until then completions stay on this machine."
    )


def header_day(fd: int) -> str:
    """The ``day`` of a segment's header line ("" when unreadable: rotate on next append)."""
    head = os.pread(fd, 1 << 16, 0)
    try:
        obj = json.loads(head[: head.index(b"\n")])
        return str(obj["body"]["day"]) if obj.get("kind") == HEADER_KIND else ""
    except (ValueError, KeyError, TypeError):
        return ""


def file_sha256(fd: int, size: int) -> str:
    """SHA-256 hex of the first ``size`` bytes of an open file."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
