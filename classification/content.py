"""Content findings over the whole document: secrets, PII and policy detectors, with spans.

:class:`ContentScanner` runs on every change of an open document, so it is incremental.
A document larger than :data:`WHOLE_LIMIT` is cut into chunks at line boundaries
(content-defined: the first blank line past :data:`CHUNK_MIN` characters, so an edit moves
no boundary but its own). Each chunk is scanned in a *window* — the chunk plus the text
after it up to :data:`~onbox.classification.detectors.CHUNK_REACH` characters, where a
token split over string literals may continue — and owns the findings that start inside
it. Findings are cached per window text (a bounded LRU, in memory only); a caller that
names the document (``key``) has its previous chunking diffed against the new text, so a
keystroke rescans one or two chunks. Multi-line blocks (private keys, PuTTY keys) whose
end lies outside the window, the bulk-e-mail count and tree-sitter policy detectors are
resolved over the whole text.

Every built-in detector is one alternation scanned in a single pass per window (RE2's
linear-time engine when ``google-re2`` is installed); validators (Luhn, mod-97, SSN
ranges) run only on candidates, and tree-sitter parses only to confirm that a
high-entropy candidate sits in a string literal or comment. Spans are ``str`` offsets;
routing replaces each with ``<ONBOX_REDACTED:type>``.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from onbox.classification import detectors as d
from onbox.classification import languages
from onbox.classification.content_tree import SyntaxTree, tree_sitter_findings
from onbox.classification.decision import Finding
from onbox.classification.detectors import iban_valid, luhn_valid, shannon_entropy, ssn_valid
from onbox.classification.patterns import MatchLike
from onbox.classification.policy_model import ContentConfig, Policy

__all__ = [
    "ContentScanner",
    "iban_valid",
    "luhn_valid",
    "scan_content",
    "shannon_entropy",
    "ssn_valid",
]

logger = logging.getLogger(__name__)

WHOLE_LIMIT = 32_000  # characters; a document up to this size is one window, parsed whole
CHUNK_MIN = 4_096  # a chunk ends at the first blank line past this many characters …
CHUNK_MAX = 16_384  # … or at the first line end past this many, or mid-line (minified)
BACK = 1_024  # a chunk cut mid-line also sees this much of the line before it
CACHE_CHARS = 32_000_000  # window text held by the cache, all documents together
MAX_DOCUMENTS = 64  # documents whose chunking is kept for diffing
_ANCHOR = re.compile(r"\n[ \t]*\n")
_CUT = re.compile(r"[\s;,]")
_CANDIDATE = re.compile(r"[A-Za-z0-9+/_=-]{20,}")


@dataclass(frozen=True)
class _Scan:
    """What one window found, relative to the start of the chunk it owns."""

    findings: tuple[Finding, ...]  # line 1 is the chunk's first line
    emails: tuple[tuple[int, int, int], ...]  # (start, end, line)
    open_blocks: tuple[tuple[str, int, int], ...]  # (group, start, anchor end): end not in view
    lines: int  # line breaks in the chunk


@dataclass
class _Chunk:
    """One chunk of a document, ``length`` characters, seen through ``window``.

    Positions are not stored: a chunk after an edit is the same object wherever it moved,
    and the scanner adds up lengths as it goes.
    """

    length: int
    own: int  # where the chunk starts in its window
    window: str
    # Each memo is one tuple, so that a thread never sees half of another's update.
    scanned: tuple[int, str | None, _Scan] | None = None  # (policy slot, grammar, scan)
    absolute: tuple[_Scan, int, int, tuple[Finding, ...]] | None = None


@dataclass
class _Layout:
    length: int
    chunks: list[_Chunk] = field(default_factory=list)


class ContentScanner:
    """Scans documents for findings; caches per window text and per document layout.

    Thread-safe: the caches are guarded by a lock, the scanning itself runs outside it.
    """

    def __init__(self, cache_chars: int = CACHE_CHARS, max_documents: int = MAX_DOCUMENTS):
        self._lock = threading.Lock()
        self._cache_chars = cache_chars
        self._max_documents = max_documents
        self._windows: OrderedDict[tuple[object, ...], _Scan] = OrderedDict()
        self._held = 0
        self._policies: OrderedDict[int, tuple[Policy, int]] = OrderedDict()
        self._slots = itertools.count()
        self._layouts: OrderedDict[str, _Layout] = OrderedDict()

    def clear(self) -> None:
        """Forget every cached window and layout."""
        with self._lock:
            self._windows.clear()
            self._held = 0
            self._policies.clear()
            self._layouts.clear()

    def scan(
        self, text: str, language: str | None, policy: Policy, key: str | None = None
    ) -> tuple[Finding, ...]:
        """Every secret, PII item and policy-detector match in ``text``, in text order.

        ``language`` is an LSP ``languageId`` or grammar name (``None`` if unknown); ``key``
        names the document (a URI or path) so the next scan of it can reuse this one's
        chunks.
        """
        config = policy.content_config()
        grammar = languages.normalise_language(language)
        slot = self._slot(policy)
        if len(text) <= WHOLE_LIMIT:
            chunks = [_Chunk(len(text), 0, text)]
        else:
            chunks = self._layout(key, text)
        findings: list[Finding] = []
        emails: list[tuple[int, int, int]] = []
        line, pos = 1, 0
        for chunk in chunks:
            scan = self._scan_chunk(chunk, slot, grammar, policy, config, len(chunks) == 1)
            if scan.findings:
                findings.extend(_absolute(chunk, scan, pos, line))
            if scan.emails:
                emails.extend((pos + s, pos + e, line + n - 1) for s, e, n in scan.emails)
            for group, start, anchor_end in scan.open_blocks:
                start, anchor_end = start + pos, anchor_end + pos
                end = d.block_end(text, group, start, anchor_end, len(text)) or len(text)
                ftype = d.TYPES[group][0]
                findings.append(_finding(config, "block", ftype, start, end, "builtin", line))
            line += scan.lines
            pos += chunk.length
        if config.pii is not None and len(emails) >= config.bulk_emails:
            findings.extend(
                Finding("pii", "email", s, e, config.pii, "builtin:bulk-emails", n)
                for s, e, n in emails
            )
        findings.extend(tree_sitter_findings(text, grammar, policy, key))
        findings.sort(key=lambda f: (f.start, f.end))
        return _without_covered_entropy(findings) if len(chunks) > 1 else tuple(findings)

    def _slot(self, policy: Policy) -> int:
        """A cache slot for ``policy``: a number never given to another policy object."""
        with self._lock:
            entry = self._policies.get(id(policy))
            if entry is None or entry[0] is not policy:
                entry = (policy, next(self._slots))
                self._policies[id(policy)] = entry
                while len(self._policies) > 8:
                    _, (_, old) = self._policies.popitem(last=False)
                    for cache_key in [k for k in self._windows if k[0] == old]:
                        self._held -= len(cache_key[-1])  # type: ignore[arg-type]
                        del self._windows[cache_key]
            self._policies.move_to_end(id(policy))
        return entry[1]

    def _scan_chunk(
        self,
        chunk: _Chunk,
        slot: int,
        grammar: str | None,
        policy: Policy,
        config: ContentConfig,
        whole: bool,
    ) -> _Scan:
        memo = chunk.scanned
        if memo is not None and memo[0] == slot and memo[1] == grammar:
            return memo[2]
        own = chunk.own
        cache_key = (slot, grammar, whole, own, chunk.length, chunk.window)
        with self._lock:
            scan = self._windows.get(cache_key)
            if scan is not None:
                self._windows.move_to_end(cache_key)
        if scan is None:
            scan = _scan_window(
                chunk.window, own, own + chunk.length, grammar, whole, policy, config
            )
            with self._lock:
                if cache_key not in self._windows:
                    self._windows[cache_key] = scan
                    self._held += len(chunk.window)
                while self._held > self._cache_chars and len(self._windows) > 1:
                    old_key, _ = self._windows.popitem(last=False)
                    self._held -= len(old_key[-1])  # type: ignore[arg-type]
        chunk.scanned = (slot, grammar, scan)
        return scan

    def _layout(self, key: str | None, text: str) -> list[_Chunk]:
        """The chunks of ``text``, reusing the unchanged ones of ``key``'s previous text."""
        previous = None
        if key is not None:
            with self._lock:
                previous = self._layouts.get(key)
        chunks = _rechunk(previous, text) if previous else _chunks(text, 0, len(text))
        if key is not None:
            with self._lock:
                self._layouts[key] = _Layout(len(text), chunks)
                self._layouts.move_to_end(key)
                while len(self._layouts) > self._max_documents:
                    self._layouts.popitem(last=False)
        return chunks


def _absolute(chunk: _Chunk, scan: _Scan, start: int, line: int) -> tuple[Finding, ...]:
    """The chunk's findings at their offsets in the document (memoised per position)."""
    memo = chunk.absolute
    if memo is not None and memo[0] is scan and memo[1] == start and memo[2] == line:
        return memo[3]
    shifted = tuple(
        Finding(
            f.kind, f.type, f.start + start, f.end + start, f.label, f.detector,
            f.line + line - 1,
        )
        for f in scan.findings
    )  # fmt: skip
    chunk.absolute = (scan, start, line, shifted)
    return shifted


def _without_covered_entropy(findings: list[Finding]) -> tuple[Finding, ...]:
    """Drop entropy findings inside a finding that an earlier chunk owns (a window only
    sees the findings that start in it, so it cannot skip those itself)."""
    kept = []
    reach = -1
    for finding in findings:
        if finding.type == "high-entropy-string" and finding.start < reach:
            continue
        if finding.type != "high-entropy-string":
            reach = max(reach, finding.end)
        kept.append(finding)
    return tuple(kept)


def _finding(
    config: ContentConfig, kind: str, ftype: str, start: int, end: int, source: str, line: int
) -> Finding:
    label = config.pii if kind == "pii" else config.secrets
    assert label is not None  # callers only report kinds whose label is set
    return Finding("secret" if kind == "block" else kind, ftype, start, end, label, source, line)


# --- chunking ------------------------------------------------------------------------


def _bounds(text: str, start: int, stop: int) -> list[tuple[int, int]]:
    """Cut ``text[start:stop]`` into chunks (``start`` and ``stop`` are chunk boundaries)."""
    bounds = []
    pos = start
    while stop - pos > CHUNK_MAX:
        anchor = _ANCHOR.search(text, pos + CHUNK_MIN, pos + CHUNK_MAX)
        if anchor is not None:
            end = anchor.end()
        else:
            newline = text.find("\n", pos + CHUNK_MAX // 2, pos + CHUNK_MAX)
            if newline != -1:
                end = newline + 1
            else:  # one very long line: cut after a space or separator
                cut = _CUT.search(text, pos + CHUNK_MAX // 2, pos + CHUNK_MAX)
                end = cut.end() if cut else pos + CHUNK_MAX
        bounds.append((pos, end))
        pos = end
    if pos < stop:
        bounds.append((pos, stop))
    return bounds


def _chunk_at(text: str, start: int, end: int) -> _Chunk:
    wstart = start if start == 0 or text[start - 1] == "\n" else max(0, start - BACK)
    reach = end + d.CHAIN_REACH
    line_end = text.find("\n", reach, reach + d.CHAIN_REACH)
    wend = min(len(text), line_end if line_end != -1 else reach + d.CHAIN_REACH)
    return _Chunk(end - start, start - wstart, text[wstart:wend])


def _chunks(text: str, start: int, stop: int) -> list[_Chunk]:
    return [_chunk_at(text, s, e) for s, e in _bounds(text, start, stop)]


def _rechunk(previous: _Layout, text: str) -> list[_Chunk]:
    """Reuse the chunks whose windows are unchanged at the start and end of ``text``.

    Comparisons are ``str.startswith`` at an offset (a memcmp), so an unchanged 5 MB
    document costs a fraction of a millisecond; only the region between the last unchanged
    leading chunk and the first unchanged trailing one is cut and scanned again.
    """
    old = previous.chunks
    starts = list(itertools.accumulate((c.length for c in old), initial=0))
    delta = len(text) - previous.length
    k = 0
    while k < len(old):
        chunk = old[k]
        wstart = starts[k] - chunk.own
        if wstart + len(chunk.window) > len(text) or not text.startswith(chunk.window, wstart):
            break
        k += 1
    if k == len(old) and delta == 0:
        return old
    middle_start = starts[k]
    j = len(old)
    while j > k:
        chunk = old[j - 1]
        wstart = starts[j - 1] - chunk.own + delta
        if wstart < 0 or starts[j - 1] + delta < middle_start:
            break
        if not text.startswith(chunk.window, wstart):
            break
        j -= 1
    middle_stop = starts[j] + delta if j < len(old) else len(text)
    middle = _chunks(text, middle_start, middle_stop) if middle_stop > middle_start else []
    return old[:k] + middle + old[j:]


# --- one window ----------------------------------------------------------------------


def _scan_window(
    window: str,
    own_start: int,
    own_end: int,
    grammar: str | None,
    whole: bool,
    policy: Policy,
    config: ContentConfig,
) -> _Scan:
    """Scan ``window``; keep what starts in ``window[own_start:own_end]``, made relative."""
    tree = SyntaxTree(window, grammar, whole)
    hits: list[tuple[str, str, int, int, str]] = []  # (kind, type, start, end, source)
    emails: list[tuple[int, int]] = []
    blocks: list[tuple[str, int, int]] = []
    _builtin(window, config, hits, emails, blocks, own_end)
    if config.secrets is not None:
        _split_literals(window, hits)
    if config.entropy and config.secrets is not None:
        _entropy(window, config, tree, hits)
    findings = []
    for kind, ftype, start, end, source in hits:
        if not own_start <= start < own_end:
            continue
        line = window.count("\n", own_start, start) + 1
        rel_start, rel_end = start - own_start, end - own_start
        findings.append(_finding(config, kind, ftype, rel_start, rel_end, source, line))
    findings.extend(_regex_detectors(window, policy, own_start, own_end))
    findings.sort(key=lambda f: (f.start, f.end))
    return _Scan(
        tuple(findings),
        tuple(
            (s - own_start, e - own_start, window.count("\n", own_start, s) + 1)
            for s, e in emails
            if own_start <= s < own_end
        ),
        tuple((g, s - own_start, e - own_start) for g, s, e in blocks if own_start <= s < own_end),
        window.count("\n", own_start, own_end),
    )


_DIGIT_TAIL = re.compile(r"(?:[ .-]?[0-9])*")


def _builtin(
    text: str,
    config: ContentConfig,
    hits: list[tuple[str, str, int, int, str]],
    emails: list[tuple[int, int]],
    blocks: list[tuple[str, int, int]],
    own_end: int,
) -> None:
    covered = -1  # the end of the last block: anchors inside it are part of it
    for match in d.COMBINED.finditer(text):
        group = _group_of(match)
        if group is None:
            continue
        ftype, kind = d.TYPES[group]
        start, end = match.span(d.INDEX[group])
        if (config.secrets if kind in ("secret", "block") else config.pii) is None:
            continue
        if group == "email":
            emails.append((start, end))
        elif group == "num":
            hits.extend(("pii", "card-number", s, e, "builtin") for s, e in d.card_spans(text, start, end))  # fmt: skip
            hits.extend(("pii", "us-ssn", s, e, "builtin") for s, e in d.ssn_spans(text, start, end))  # fmt: skip
        elif group == "iban":
            ibans = list(d.iban_spans(text, start, end))
            hits.extend(("pii", "iban", s, e, "builtin") for s, e in ibans)
            # The IBAN alternative may swallow digits after the IBAN (a card number that
            # follows it): those are numbers in their own right.
            rest = max((e for _, e in ibans), default=start)
            tail = _DIGIT_TAIL.match(text, end)  # the number may run on past the match
            stop = tail.end() if tail else end
            hits.extend(("pii", "card-number", s, e, "builtin") for s, e in d.card_spans(text, rest, stop))  # fmt: skip
            hits.extend(("pii", "us-ssn", s, e, "builtin") for s, e in d.ssn_spans(text, rest, stop))  # fmt: skip
        elif kind == "block":
            if start < covered:
                continue
            block = d.block_end(text, group, start, end, len(text))
            if block is None:
                if start < own_end:
                    blocks.append((group, start, end))
                covered = len(text)
            else:
                hits.append(("block", ftype, start, block, "builtin"))
                covered = block
        else:
            value = f"{group}_v"
            if value in d.INDEX:
                start, end = match.span(d.INDEX[value])
                if not d.valid_value(group, text, start, end, match.start()):
                    continue
            hits.append((kind, ftype, start, end, "builtin"))


def _group_of(match: MatchLike) -> str | None:
    group = match.lastgroup
    if group is None or group not in d.TYPES:  # re2 reports the innermost group
        group = next((g for g in d.TYPES if match.group(d.INDEX[g]) is not None), None)
    return group


def _split_literals(text: str, hits: list[tuple[str, str, int, int, str]]) -> None:
    """Secrets that only appear once adjacent or ``+``-joined string literals are joined."""
    for pieces in d.literal_chains(text):
        joined = "".join(p.content for p in pieces)
        ends = []
        total = 0
        for piece in pieces:
            total += len(piece.content)
            ends.append(total)
        for match in d.COMBINED.finditer(joined):
            group = _group_of(match)
            if group is None or d.TYPES[group][1] != "secret":
                continue
            value = f"{group}_v"
            span = match.span(d.INDEX[value] if value in d.INDEX else d.INDEX[group])
            if not d.valid_value(group, joined, span[0], span[1], match.start()):
                continue
            first = next(i for i, e in enumerate(ends) if span[0] < e)
            last = next(i for i, e in enumerate(ends) if span[1] <= e)
            if first == last:
                continue  # inside one literal: the plain pass finds it
            start = pieces[first].offset + span[0] - (ends[first] - len(pieces[first].content))
            end = pieces[last].offset + span[1] - (ends[last] - len(pieces[last].content))
            hits.append(("secret", d.TYPES[group][0], start, end, "builtin:split-literal"))


def _entropy(
    text: str, config: ContentConfig, tree: SyntaxTree, hits: list[tuple[str, str, int, int, str]]
) -> None:
    taken = [(h[2], h[3]) for h in hits]
    for match in _CANDIDATE.finditer(text):
        start, end = match.span()
        token = match.group()
        if len(token) < config.entropy_min_length:
            continue
        if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
            continue
        line_start = text.rfind("\n", 0, start) + 1
        if not d.entropy_secret(token, text[line_start:start], config.entropy_threshold):
            continue
        if any(s < end and start < e for s, e in taken):
            continue
        if tree.in_literal(start, end):
            hits.append(("secret", "high-entropy-string", start, end, "builtin:entropy"))


def _regex_detectors(text: str, policy: Policy, own_start: int, own_end: int) -> list[Finding]:
    found = []
    for detector in policy.detectors:
        if detector.kind != "regex" or detector.compiled is None:
            continue
        for match in detector.compiled.finditer(text):
            start, end = match.start(), match.end()
            if end > start and own_start <= start < own_end:
                line = text.count("\n", own_start, start) + 1
                found.append(
                    Finding(
                        "detector", detector.name, start - own_start, end - own_start,
                        detector.label, detector.name, line,
                    )
                )  # fmt: skip
    return found


_SCANNER = ContentScanner()


def scan_content(
    text: str, language: str | None, policy: Policy, key: str | None = None
) -> tuple[Finding, ...]:
    """Every secret, PII item and policy-detector match in ``text``, in text order.

    Uses the process-wide :class:`ContentScanner`; ``key`` (a path or URI) lets a large
    document be rescanned incrementally.
    """
    return _SCANNER.scan(text, language, policy, key)
