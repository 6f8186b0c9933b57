"""Content findings: secrets, PII and policy detectors, with their spans.

:func:`scan_content` runs on every change of an open document, so it is built for
speed: every built-in detector is one alternation scanned in a single pass (RE2's
linear-time engine when ``google-re2`` is installed), validators (Luhn, mod-97, SSN
ranges) run only on candidates, and tree-sitter parses the text only when a
high-entropy candidate must be confirmed to sit in a string literal or comment, or when
the policy has a tree-sitter detector for the file's language.

Spans are ``str`` offsets; routing replaces each with ``<ONBOX_REDACTED:type>``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, cast

from tree_sitter import Query, QueryCursor

from onbox.classification import languages
from onbox.classification.decision import Finding
from onbox.classification.labels import Label
from onbox.classification.patterns import compile_fast_regex
from onbox.classification.policy_model import ContentConfig, Policy

logger = logging.getLogger(__name__)

#: (group name, finding type, kind, regex). Groups ending in "_v" narrow the span.
_BUILTINS: tuple[tuple[str, str, str, str], ...] = (
    ("pk", "private-key", "secret", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    (
        "aws",
        "aws-access-key",
        "secret",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
    ),
    (
        "awss",
        "aws-secret-key",
        "secret",
        r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?(?P<awss_v>[A-Za-z0-9/+]{40})\b",
    ),
    ("ghp", "github-token", "secret", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b"),
    ("ghpat", "github-token", "secret", r"\bgithub_pat_[A-Za-z0-9_]{82}\b"),
    ("glpat", "gitlab-token", "secret", r"\bglpat-[A-Za-z0-9_-]{20}\b"),
    ("slack", "slack-token", "secret", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    (
        "slackhook",
        "slack-webhook",
        "secret",
        r"https://hooks\.slack\.com/services/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+",
    ),
    ("stripe", "stripe-key", "secret", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    ("gapi", "google-api-key", "secret", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("goauth", "google-oauth-secret", "secret", r"\bGOCSPX-[A-Za-z0-9_-]{28}"),
    ("jwt", "jwt", "secret", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
    ("card", "card-number", "pii", r"\b[2-6]\d{3}(?:[ -]?\d){9,15}\b"),
    ("ssn", "us-ssn", "pii", r"\b\d{3}-\d{2}-\d{4}\b"),
    ("iban", "iban", "pii", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
    (
        "email",
        "email",
        "pii",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    ),
)
_TYPES = {group: (ftype, kind) for group, ftype, kind, _ in _BUILTINS}
_COMBINED = compile_fast_regex("|".join(f"(?P<{g}>{rx})" for g, _, _, rx in _BUILTINS))
_INDEX: dict[str, int] = dict(_COMBINED.groupindex)  # re2 wants group numbers
_CANDIDATE = compile_fast_regex(r"[A-Za-z0-9+/_=-]{20,}")
_KEYWORD = re.compile(r"(?i)secret|token|passw|api_?key|credential|private")
FULL_PARSE_LIMIT = 32_000  # characters; larger documents are checked line by line
LINE_WINDOW = 1_000  # characters either side of a candidate on a very long line
_PK_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")

_IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
}


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether ``candidate`` (spaces allowed) is an IBAN with a valid length and mod-97."""
    compact = candidate.replace(" ", "")
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_valid(candidate: str) -> bool:
    """US SSN structure: area not 000/666/9xx, group not 00, serial not 0000."""
    area, group, serial = candidate.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def shannon_entropy(text: str) -> float:
    """Bits of entropy per character of ``text``."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _valid(group: str, value: str) -> bool:
    if group == "card":
        digits = value.replace(" ", "").replace("-", "")
        return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)
    if group == "ssn":
        return ssn_valid(value)
    if group == "iban":
        return iban_valid(value)
    return True


class _Tree:
    """A lazily parsed syntax tree with str↔byte offset conversion."""

    def __init__(self, text: str, language: str | None) -> None:
        self.text = text
        self.language = language
        self.ascii = text.isascii()
        self._data: bytes | None = None
        self._root: Any = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.text.encode("utf-8", "surrogatepass")
        return self._data

    @property
    def root(self) -> Any:
        if self._root is None and self.language is not None:
            self._root = languages.parse(self.language, self.data).root_node
        return self._root

    def to_byte(self, offset: int) -> int:
        return offset if self.ascii else len(self.text[:offset].encode("utf-8", "surrogatepass"))

    def to_char(self, offset: int) -> int:
        return offset if self.ascii else len(self.data[:offset].decode("utf-8", "replace"))

    def in_literal(self, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` sits in a string literal or comment.

        Small documents are parsed whole. Large ones parse only the candidate's line, so
        a secret costs microseconds, not a 30 ms parse; a line that does not parse on its
        own (say, inside a multi-line string) counts as a literal: that only raises.
        """
        if self.language is None:
            before = self.text[max(0, start - 3) : start].rstrip()
            return bool(before) and before[-1] in "\"'`=:"
        if len(self.text) <= FULL_PARSE_LIMIT:
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


def scan_content(text: str, language: str | None, policy: Policy) -> tuple[Finding, ...]:
    """Every secret, PII item and policy-detector match in ``text``, in text order.

    ``language`` is an LSP ``languageId`` or grammar name (``None`` if unknown).
    """
    config = policy.content_config()
    grammar = languages.normalise_language(language)
    tree = _Tree(text, grammar)
    findings = list(_builtin_findings(text, config))
    if config.entropy and config.secrets is not None:
        findings.extend(_entropy_findings(text, config, config.secrets, tree, findings))
    findings.extend(_detector_findings(text, policy, tree))
    findings.sort(key=lambda f: (f.start, f.end))
    return tuple(findings)


def _builtin_findings(text: str, config: ContentConfig) -> Iterator[Finding]:
    emails: list[tuple[int, int]] = []
    for match in _COMBINED.finditer(text):
        group = match.lastgroup
        if group is None or group not in _TYPES:
            group = next((g for g in _TYPES if match.group(_INDEX[g]) is not None), None)
            if group is None:
                continue
        ftype, kind = _TYPES[group]
        start, end = match.span(_INDEX[group])
        if group == "email":
            emails.append((start, end))
            continue
        if not _valid(group, text[start:end]):
            continue
        if group == "pk":
            tail = _PK_END.search(text, end)
            end = tail.end() if tail else len(text)
        if group == "awss":  # redact the key, not its name
            start, end = match.span(_INDEX["awss_v"])
        label = config.secrets if kind == "secret" else config.pii
        if label is not None:
            yield Finding(kind, ftype, start, end, label, "builtin", _line_of(text, start))
    if config.pii is not None and len(emails) >= config.bulk_emails:
        for start, end in emails:
            yield Finding(
                "pii", "email", start, end, config.pii, "builtin:bulk-emails", _line_of(text, start)
            )


def _entropy_findings(
    text: str, config: ContentConfig, label: Label, tree: _Tree, existing: Iterable[Finding]
) -> Iterator[Finding]:
    taken = [(f.start, f.end) for f in existing]
    for match in _CANDIDATE.finditer(text):
        start, end = match.start(), match.end()
        token = text[start:end]
        if len(token) < config.entropy_min_length or not any(c.isdigit() for c in token):
            continue
        if not any(c.isalpha() for c in token):
            continue
        entropy = shannon_entropy(token)
        if entropy < config.entropy_threshold:
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", end)
            line = text[line_start : line_end if line_end != -1 else len(text)]
            if entropy < 3.0 or not _KEYWORD.search(line):
                continue
        if any(s < end and start < e for s, e in taken):
            continue
        if not tree.in_literal(start, end):
            continue
        yield Finding(
            "secret",
            "high-entropy-string",
            start,
            end,
            label,
            "builtin:entropy",
            _line_of(text, start),
        )


def _detector_findings(text: str, policy: Policy, tree: _Tree) -> Iterator[Finding]:
    for detector in policy.detectors:
        if detector.compiled is None:
            continue
        if detector.kind == "regex":
            for match in detector.compiled.finditer(text):
                if match.end() > match.start():
                    yield Finding(
                        "detector",
                        detector.name,
                        match.start(),
                        match.end(),
                        detector.label,
                        detector.name,
                        _line_of(text, match.start()),
                    )
        elif detector.kind == "tree-sitter" and tree.language is not None:
            wanted = languages.normalise_language(detector.language)
            if wanted != tree.language:
                continue
            captures = QueryCursor(cast(Query, detector.compiled)).captures(tree.root)
            for nodes in captures.values():
                for node in nodes:
                    start, end = tree.to_char(node.start_byte), tree.to_char(node.end_byte)
                    yield Finding(
                        "detector",
                        detector.name,
                        start,
                        end,
                        detector.label,
                        detector.name,
                        node.start_point[0] + 1,
                    )
