"""Replace secrets and PII with typed placeholders before text leaves the machine.

Classification reports each sensitive span as a :class:`~onbox.classification.decision.Finding`
with code-point offsets into the document. :func:`redact_window` cuts a window out of the
text and replaces every finding that overlaps it — even one that only partly overlaps —
with ``<ONBOX_REDACTED:type>``; :func:`strip_placeholders` removes placeholders a model
echoes back in its answer. Counts are kept by finding type for the journal.

Nothing here raises except :class:`ValueError` for a window outside the text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from onbox.classification.decision import Finding

PLACEHOLDER_PREFIX = "<ONBOX_REDACTED:"
_TYPE_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_PLACEHOLDER = re.compile(r"<ONBOX_REDACTED:[A-Za-z0-9_.-]*>")


def placeholder(kind: str) -> str:
    """The placeholder for a finding type, e.g. ``<ONBOX_REDACTED:aws-access-key>``."""
    return f"{PLACEHOLDER_PREFIX}{_TYPE_SAFE.sub('-', kind) or 'secret'}>"


@dataclass(frozen=True)
class Redacted:
    """A redacted piece of text and the findings replaced in it."""

    text: str
    replaced: tuple[Finding, ...] = ()

    def counts(self) -> dict[str, int]:
        """Replaced findings by type."""
        return count_types(self.replaced)


def redact_window(
    text: str, findings: Sequence[Finding], start: int = 0, end: int | None = None
) -> Redacted:
    """Return ``text[start:end]`` with every overlapping finding replaced by its placeholder.

    Overlapping or nested findings merge into one replaced span that takes the first
    finding's type; every one of them counts as replaced.
    """
    stop = len(text) if end is None else end
    if not 0 <= start <= stop <= len(text):
        raise ValueError(f"window {start}:{stop} is outside a text of {len(text)} characters")
    hits = sorted(
        (f for f in findings if f.start < stop and f.end > start and f.end > f.start),
        key=lambda f: (f.start, -f.end),
    )
    if not hits:
        return Redacted(text[start:stop])
    parts: list[str] = []
    cursor = start
    span_end = -1
    for finding in hits:
        lo = max(finding.start, start)
        hi = min(finding.end, stop)
        if lo < span_end:  # overlaps the span just replaced: widen it
            span_end = max(span_end, hi)
            cursor = span_end
            continue
        parts.append(text[cursor:lo])
        parts.append(placeholder(finding.type))
        span_end = hi
        cursor = hi
    parts.append(text[cursor:stop])
    return Redacted("".join(parts), tuple(hits))


def merge_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    """Sum redaction counts given as ``{type: n}`` mappings."""
    total: Counter[str] = Counter()
    for item in counts:
        total.update(item)
    return dict(total)


def count_types(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings counted by type."""
    return dict(Counter(f.type for f in findings))


def strip_placeholders(answer: str) -> str:
    """Remove placeholders echoed back by a model, including one cut off at the end."""
    cleaned = _PLACEHOLDER.sub("", answer)
    tail = cleaned.rfind("<")
    if tail != -1 and 2 <= len(cleaned) - tail <= len(PLACEHOLDER_PREFIX) + 64:
        rest = cleaned[tail:]
        if PLACEHOLDER_PREFIX.startswith(rest[: len(PLACEHOLDER_PREFIX)]) and (
            len(rest) <= len(PLACEHOLDER_PREFIX)
            or (rest.startswith(PLACEHOLDER_PREFIX) and ">" not in rest)
        ):
            cleaned = cleaned[:tail]
    return cleaned


def contains_placeholder(text: str) -> bool:
    """Whether ``text`` holds a complete placeholder."""
    return _PLACEHOLDER.search(text) is not None
