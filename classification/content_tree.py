"""Tree-sitter for the content scanner: literal checks in a window, and policy queries.

:class:`SyntaxTree` answers "does this span sit in a string literal or comment" for the
entropy rule, parsing lazily. :func:`tree_sitter_findings` runs the policy's tree-sitter
detectors (``stripe-sdk`` …) over the *whole* document. Tree-sitter's own incremental
reparse of a flat 5 MB module still takes about 250 ms (it walks every top-level item),
so a named document instead keeps its top-level items and their captures, and an edit
reparses only the items it touches.
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

from tree_sitter import Query, QueryCursor

from onbox.classification import languages
from onbox.classification.decision import Finding
from onbox.classification.policy_model import Detector, Policy

FULL_PARSE_LIMIT = 32_000  # characters; larger documents are checked line by line
LINE_WINDOW = 1_000  # characters either side of a candidate on a very long line
_COLUMN_ZERO = re.compile(r"\n(?=[^\s])")
MAX_TREES = 16  # documents whose syntax tree is kept for incremental parsing


class SyntaxTree:
    """A lazily parsed syntax tree of one text (a document or a window of it)."""

    def __init__(self, text: str, language: str | None, whole: bool = True) -> None:
        self.text = text
        self.language = language
        self.whole = whole and len(text) <= FULL_PARSE_LIMIT
        self._root: Any = None

    @property
    def root(self) -> Any:
        """The root node (parsed on first use)."""
        if self._root is None and self.language is not None:
            data = self.text.encode("utf-8", "surrogatepass")
            self._root = languages.parse(self.language, data).root_node
        return self._root

    def to_byte(self, offset: int) -> int:
        """The UTF-8 byte offset of ``str`` offset ``offset``."""
        return len(self.text[:offset].encode("utf-8", "surrogatepass"))

    def in_literal(self, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` sits in a string literal or comment.

        A small whole document is parsed whole. Otherwise only the candidate's line is
        parsed, so a secret costs microseconds, not a 30 ms parse; a line that does not
        parse on its own (say, inside a multi-line string) counts as a literal: that only
        raises. Without a grammar, a token right after a quote, ``=`` or ``:`` counts.
        """
        if self.language is None:
            before = self.text[max(0, start - 3) : start].rstrip()
            return bool(before) and before[-1] in "\"'`=:"
        if self.whole:
            return _literal_at(self.root, self.to_byte(start), self.to_byte(end))
        line_start = self.text.rfind("\n", 0, start) + 1
        line_end = self.text.find("\n", end)
        line_end = line_end if line_end != -1 else len(self.text)
        # Minified code can have megabyte lines: parse a window around the token instead.
        line_start = max(line_start, start - LINE_WINDOW)
        line = self.text[line_start : min(line_end, end + LINE_WINDOW)]
        prefix = len(self.text[line_start:start].encode("utf-8", "surrogatepass"))
        token = len(self.text[start:end].encode("utf-8", "surrogatepass"))
        root = languages.parse(self.language, line.encode("utf-8", "surrogatepass")).root_node
        return bool(root.has_error) or _literal_at(root, prefix, prefix + token)


def _literal_at(root: Any, start: int, end: int) -> bool:
    node = root.descendant_for_byte_range(start, end)
    while node is not None:
        kind = node.type
        if kind in languages.LITERAL_NODE_TYPES or "string" in kind or "comment" in kind:
            return True
        node = node.parent
    return False


@dataclass
class _Parsed:
    """A document's top-level items and the captures of each detector (``str`` offsets)."""

    text: str
    starts: list[int]  # of each child of the root node
    ends: list[int]
    captures: dict[str, list[tuple[int, int]]]
    policy: Policy


_lock = threading.Lock()
_parsed: OrderedDict[tuple[str, str], _Parsed] = OrderedDict()


def tree_sitter_findings(
    text: str, language: str | None, policy: Policy, key: str | None
) -> list[Finding]:
    """Findings of the policy's tree-sitter detectors for ``language`` over all of ``text``.

    With ``key``, the document's previous parse is reused: only the top-level items
    (children of the root node) that an edit touches, and one either side, are parsed
    again, on their own; the rest keep their captures, moved by the edit's length. An
    unterminated string or comment being typed therefore does not hide the code after it
    (which can only raise a label). A single top-level item is reparsed whole, so in a
    grammar whose file is one item (a Java class) every edit costs a full parse.
    """
    if language is None:
        return []
    wanted = [
        det
        for det in policy.detectors
        if det.kind == "tree-sitter"
        and det.compiled is not None
        and languages.normalise_language(det.language) == language
    ]
    if not wanted:
        return []
    with _lock:
        previous = _parsed.get((key, language)) if key is not None else None
    if previous is not None and previous.policy is not policy:
        previous = None
    parsed = _reparse(text, language, wanted, previous) if previous else None
    if parsed is None:
        parsed = _parse(text, language, wanted, policy, 0)
    if key is not None:
        with _lock:
            _parsed[(key, language)] = parsed
            _parsed.move_to_end((key, language))
            while len(_parsed) > MAX_TREES:
                _parsed.popitem(last=False)
    found = []
    for det in wanted:
        line, last = 1, 0
        for start, end in parsed.captures[det.name]:
            line += text.count("\n", last, start)
            last = start
            found.append(Finding("detector", det.name, start, end, det.label, det.name, line))
    return found


def _parse(
    text: str, language: str, wanted: list[Detector], policy: Policy, base: int, split: bool = True
) -> _Parsed:
    """Parse ``text`` whole; offsets in the result are moved by ``base``.

    A top-level item with a syntax error (an unterminated string turns the rest of a file
    into one ERROR node) is parsed again in pieces cut before every line that starts in
    column 0, and the pieces' captures count too: what a broken item hides is still found.
    """
    data = text.encode("utf-8", "surrogatepass")
    root = languages.parse(language, data).root_node
    bounds = [b for child in root.children for b in (child.start_byte, child.end_byte)]
    broken = [i for i, child in enumerate(root.children) if child.has_error] if split else []
    spans = {det.name: _captures(det, root) for det in wanted}
    flat = sorted(set(bounds) | {b for found in spans.values() for pair in found for b in pair})
    chars = _char_offsets(data, flat, len(data) == len(text))
    starts = [chars[b] + base for b in bounds[0::2]]
    ends = [chars[b] + base for b in bounds[1::2]]
    captures = {
        name: {(chars[s] + base, chars[e] + base) for s, e in found}
        for name, found in spans.items()
    }
    for index in reversed(broken):  # replace each broken item by its pieces
        lo, hi = starts[index] - base, ends[index] - base
        cuts = [lo] + [m.start() + 1 for m in _COLUMN_ZERO.finditer(text, lo, hi)] + [hi]
        pieces = [
            _parse(text[x:y], language, wanted, policy, base + x, split=False)
            for x, y in itertools.pairwise(cuts)
            if y > x
        ]
        starts[index : index + 1] = [s for piece in pieces for s in piece.starts]
        ends[index : index + 1] = [e for piece in pieces for e in piece.ends]
        for piece in pieces:
            for name, found in piece.captures.items():
                captures[name].update(found)
    return _Parsed(
        text, starts, ends, {name: sorted(found) for name, found in captures.items()}, policy
    )


def _reparse(text: str, language: str, wanted: list[Detector], previous: _Parsed) -> _Parsed | None:
    """Parse again only the top-level items an edit touched; ``None``: parse everything."""
    old = previous.text
    if old == text:
        return previous
    start = _common_prefix(old, text)
    suffix = _common_suffix(old, text, start)
    old_end = len(old) - suffix
    delta = len(text) - len(old)
    starts, ends = previous.starts, previous.ends
    if len(starts) < 3:
        return None
    first = max(0, bisect.bisect_left(ends, start) - 1)
    last = min(len(starts) - 1, bisect.bisect_right(starts, old_end))
    region_start = min(starts[first], start)
    region_end = max(ends[last], old_end)
    if first == 0 and last == len(starts) - 1:
        return None
    part = _parse(
        text[region_start : region_end + delta], language, wanted, previous.policy, region_start
    )
    captures = {}
    for det in wanted:
        before = [c for c in previous.captures[det.name] if c[1] <= region_start]
        after = [(s + delta, e + delta) for s, e in previous.captures[det.name] if s >= region_end]
        captures[det.name] = before + part.captures[det.name] + after
    return _Parsed(
        text,
        starts[:first] + part.starts + [s + delta for s in starts[last + 1 :]],
        ends[:first] + part.ends + [e + delta for e in ends[last + 1 :]],
        captures,
        previous.policy,
    )


def _captures(det: Detector, root: Any) -> list[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for nodes in QueryCursor(cast(Query, det.compiled)).captures(root).values():
        found.update((n.start_byte, n.end_byte) for n in nodes)
    return sorted(found)


def _char_offsets(data: bytes, offsets: list[int], ascii_only: bool) -> dict[int, int]:
    """``str`` offsets of sorted UTF-8 byte ``offsets`` (one pass over ``data``)."""
    if ascii_only:
        return {b: b for b in offsets}
    chars: dict[int, int] = {}
    last_byte = last_char = 0
    for offset in offsets:
        last_char += len(data[last_byte:offset].decode("utf-8", "replace"))
        last_byte = offset
        chars[offset] = last_char
    return chars


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (block compares, then bisection)."""
    n = min(len(a), len(b))
    lo, step = 0, 1 << 16
    while lo < n and a[lo : lo + step] == b[lo : lo + step]:
        lo += step
    lo = min(lo, n)
    hi = min(n, lo + step)
    while lo < hi:  # a[:lo] == b[:lo] and the first difference is before hi
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, floor: int) -> int:
    """Length of the common suffix of ``a`` and ``b`` that does not reach below ``floor``."""
    limit = min(len(a), len(b)) - floor
    lo, step = 0, 1 << 16
    while lo < limit:
        size = min(step, limit - lo)
        if a[len(a) - lo - size : len(a) - lo] != b[len(b) - lo - size : len(b) - lo]:
            break
        lo += size
    hi = min(limit, lo + step)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo
