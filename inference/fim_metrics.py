"""Scoring a completion against the span it should have filled, and summing scores up.

Per answer (:func:`score`):

``exact``        the answer equals the hidden span, ignoring trailing whitespace on each
                 line and blank lines around it (the editor trims those anyway).
``similarity``   edit similarity, 1 − Levenshtein distance / length of the longer text,
                 on the same normalised texts (1.0 for identical, 0.0 for nothing shared).
``accepted``     characters a developer would accept: the length of the answer's leading
                 part that matches the hidden span (accepting word by word stops at the
                 first wrong character).
``parses``       the file with the answer in place parses with tree-sitter; ``broke``
                 when the original file parsed and this does not. Only a non-empty answer
                 is checked: an empty answer inserts nothing.

:func:`summarise` folds scores into the figures ``onbox eval`` and the quality benchmark
report: rates, means, latency p50/p95 and token totals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onbox.classification.languages import normalise_language, parse

#: Texts longer than this are cut before the quadratic edit distance.
MAX_COMPARED_CHARS = 2_000


def normalise(text: str) -> str:
    """Line endings unified, trailing whitespace and surrounding blank lines dropped,
    leading indentation of the first line dropped (the cursor sits after it)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n").lstrip(" \t")


def exact_match(answer: str, expected: str) -> bool:
    """Whether ``answer`` fills the span exactly (see :func:`normalise`)."""
    return normalise(answer) == normalise(expected)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute: 1 each)."""
    if a == b:
        return 0
    # a common prefix and suffix cost nothing; drop them before the O(n·m) table
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start : len(a) - end], b[start : len(b) - end]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(answer: str, expected: str) -> float:
    """1 − distance / longer length, on normalised texts (both empty: 1.0)."""
    a = normalise(answer)[:MAX_COMPARED_CHARS]
    b = normalise(expected)[:MAX_COMPARED_CHARS]
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(a, b) / longest


def accepted_chars(answer: str, expected: str) -> int:
    """Length of the leading part of ``answer`` that matches ``expected``."""
    a, b = normalise(answer), normalise(expected)
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def parses(language: str | None, text: str) -> bool | None:
    """Whether ``text`` parses without errors (``None``: no grammar for ``language``)."""
    name = normalise_language(language)
    if name is None:
        return None
    tree = parse(name, text.encode("utf-8", "surrogatepass"))
    return not tree.root_node.has_error


@dataclass(frozen=True)
class Score:
    """One answer scored against its task."""

    exact: bool
    similarity: float
    accepted: int
    expected_chars: int
    empty: bool
    parses: bool | None  # None: empty answer or no grammar
    broke: bool  # the original parsed, the file with the answer does not


def score(answer: str, expected: str, prefix: str, suffix: str, language: str | None) -> Score:
    """Score ``answer`` for the span ``expected`` between ``prefix`` and ``suffix``."""
    empty = not answer.strip()
    parsed: bool | None = None
    broke = False
    if not empty:
        parsed = parses(language, prefix + answer + suffix)
        if parsed is False:
            broke = bool(parses(language, prefix + expected + suffix))
    return Score(
        exact=exact_match(answer, expected),
        similarity=edit_similarity(answer, expected),
        accepted=accepted_chars(answer, expected),
        expected_chars=len(normalise(expected)),
        empty=empty,
        parses=parsed,
        broke=broke,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass(frozen=True)
class Sample:
    """One scored answer with what it cost."""

    score: Score
    latency: float  # seconds, the whole pipeline
    tokens_in: int = 0
    tokens_out: int = 0


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    """Rates and means over ``samples`` (``None`` where there is nothing to average)."""
    n = len(samples)
    scores = [s.score for s in samples]
    nonempty = [s for s in scores if not s.empty]
    checked = [s for s in nonempty if s.parses is not None]
    latencies = [s.latency for s in samples]
    expected = sum(s.expected_chars for s in scores)

    def mean(values: Sequence[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "tasks": n,
        "exactMatch": mean([float(s.exact) for s in scores]),
        "editSimilarity": mean([s.similarity for s in scores]),
        "acceptedChars": mean([float(s.accepted) for s in scores]),
        "acceptedShare": (sum(s.accepted for s in scores) / expected) if expected else None,
        "emptyRate": mean([float(s.empty) for s in scores]),
        "parsesAfter": mean([float(bool(s.parses)) for s in checked]),
        "brokeParse": mean([float(s.broke) for s in checked]),
        "latencyP50": percentile(latencies, 50),
        "latencyP95": percentile(latencies, 95),
        "tokensIn": sum(s.tokens_in for s in samples),
        "tokensOut": sum(s.tokens_out for s in samples),
    }
