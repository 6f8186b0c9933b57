"""LSP positions to string offsets, tolerant of every odd position an editor may send.

LSP counts characters in UTF-16 code units by default. A position past the end of a
line clamps to the line's end, a line past the end of the file clamps to the end of the
text, and a position inside a surrogate pair rounds down to the start of the character.
"""

from __future__ import annotations


def _line_starts(text: str) -> list[int]:
    starts = [0]
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\r":
            if i + 1 < n and text[i + 1] == "\n":
                i += 1
            starts.append(i + 1)
        elif ch == "\n":
            starts.append(i + 1)
        i += 1
    return starts


def _line_end(text: str, start: int) -> int:
    end = start
    n = len(text)
    while end < n and text[end] not in "\r\n":
        end += 1
    return end


def position_to_offset(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """Code-point offset into ``text`` for an LSP (line, character) position."""
    if line < 0:
        return 0
    starts = _line_starts(text)
    if line >= len(starts):
        return len(text)
    start = starts[line]
    end = _line_end(text, start)
    if character <= 0:
        return start
    if encoding == "utf-32":
        return min(start + character, end)
    units = 0
    for idx in range(start, end):
        ch = text[idx]
        if encoding == "utf-8":
            width = len(ch.encode("utf-8", "surrogatepass"))
        else:
            width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > character:
            return idx  # inside a multi-unit character: its start
        units += width
        if units == character:
            return idx + 1
    return end


def offset_to_position(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """LSP (line, character) for a code-point offset (clamped into the text)."""
    offset = max(0, min(offset, len(text)))
    starts = _line_starts(text)
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    segment = text[starts[lo] : offset]
    if encoding == "utf-32":
        return lo, len(segment)
    if encoding == "utf-8":
        return lo, len(segment.encode("utf-8", "surrogatepass"))
    return lo, sum(2 if ord(c) > 0xFFFF else 1 for c in segment)
