"""Context from other open documents, cleared for one destination.

A prompt may carry snippets of other open documents so the model sees the names the
developer is using. A snippet goes to a destination only if its document's label is
within that destination's clearance; before it leaves the machine its secrets and PII
are replaced by placeholders — both the spans classification found in that document and
whatever a fresh content scan of the snippet finds.

Nothing here raises; a document that cannot be judged is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onbox.classification.decision import Decision, Finding
from onbox.classification.labels import Label, LabelScale, UnknownLabelError
from onbox.inference.destination import ContextSnippet
from onbox.inference.redaction import merge_counts, redact_window

logger = logging.getLogger(__name__)

#: ``scan(text, language) -> findings``, e.g. a policy bound to ``scan_content``.
Scanner = Callable[[str, "str | None"], Sequence[Finding]]


@dataclass(frozen=True)
class DocumentView:
    """One open document as routing sees it: its text, cursor and decision.

    ``offset`` is the cursor position in ``text`` in code points (ignored for documents
    used only as context).
    """

    uri: str
    path: str | None
    text: str
    offset: int
    language: str | None
    decision: Decision
    version: int | None = None  # the editor's version of ``text`` (None: read from disk)


@dataclass(frozen=True)
class ContextLimits:
    """How much context a prompt may carry."""

    max_snippets: int = 4
    snippet_chars: int = 1500
    total_chars: int = 4000


@dataclass(frozen=True)
class GatheredContext:
    """Snippets cleared for one destination, what was redacted, and what was left out."""

    snippets: tuple[ContextSnippet, ...]
    redactions: dict[str, int]
    left_out: tuple[tuple[str, str], ...]  # (uri, why)


def label_in(scale: LabelScale, label: Label) -> Label:
    """``label`` re-ranked on ``scale``; an unknown name is treated as the highest label."""
    try:
        return scale.parse(label.name)
    except UnknownLabelError:
        return scale.highest


def gather_context(
    current: DocumentView,
    others: Sequence[DocumentView],
    clearance: Label,
    scale: LabelScale,
    *,
    redact: bool,
    scan: Scanner | None = None,
    limits: ContextLimits = ContextLimits(),
) -> GatheredContext:
    """Pick snippets of ``others`` whose label is within ``clearance``, redacted if asked.

    ``others`` are taken in the order given (most relevant first); documents of the same
    language as ``current`` come before the rest.
    """
    snippets: list[ContextSnippet] = []
    left_out: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    budget = limits.total_chars
    ordered = sorted(others, key=lambda d: d.language != current.language)
    for other in ordered:
        if other.uri == current.uri:
            continue
        label = label_in(scale, other.decision.label)
        if label.rank > clearance.rank:
            left_out.append((other.uri, f"label {label.name} above clearance {clearance.name}"))
            continue
        if len(snippets) >= limits.max_snippets or budget <= 0:
            left_out.append((other.uri, "context budget spent"))
            continue
        end = min(len(other.text), limits.snippet_chars, budget)
        if end == 0:
            continue
        # Cut at a line end so that a half line does not confuse the model.
        newline = other.text.rfind("\n", 0, end)
        if newline > 0 and end < len(other.text):
            end = newline + 1
        text = other.text[:end]
        if redact:
            findings: list[Finding] = [f for f in other.decision.findings if f.start < end]
            if scan is not None:
                try:
                    scanned = scan(text, other.language)
                except Exception:  # a scanner failure must not let a secret through
                    logger.warning("content scan of %s failed; left out", other.uri, exc_info=True)
                    left_out.append((other.uri, "content scan failed"))
                    continue
                if any(label_in(scale, f.label).rank > clearance.rank for f in scanned):
                    left_out.append((other.uri, "content above clearance"))
                    continue
                findings.extend(scanned)
            redacted = redact_window(text, findings)
            text = redacted.text
            counts = merge_counts(counts, redacted.counts())
        snippets.append(ContextSnippet(other.path or other.uri, text, label.name))
        budget -= len(text)
    return GatheredContext(tuple(snippets), counts, tuple(left_out))
