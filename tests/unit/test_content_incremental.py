"""The incremental whole-document scan: same findings as a fresh scan, borders included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onbox.classification import content
from onbox.classification.content import ContentScanner, _bounds
from onbox.classification.content_tree import tree_sitter_findings
from onbox.classification.policy import Policy, parse_policy

POLICY: Policy = parse_policy(
    b"""
[policy]
id = "i"
default_label = "public"

[content]
secrets = "restricted"
pii = "internal"
bulk_emails = 3

[[detectors]]
name = "stripe-sdk"
kind = "tree-sitter"
language = "python"
query = '(import_statement name: (dotted_name) @m (#eq? @m "stripe"))'
label = "restricted"
""",
    "i.toml",
)
PII_OFF = b"""
[policy]
id = "o"
default_label = "public"
[content]
secrets = "restricted"
pii = "off"
"""
FUNCTION = 'def handler_{i}(request):\n    """Handle {i}."""\n    return {{"n": {i}}}\n\n'
SECRETS = [
    'TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"\n',
    'DSN = "postgres://app:S3cr3t@db/app"\n',
    'CARD = "4111 1111 1111 1111 12/27"\n',
    "import stripe\n",
    'KEY = ("ghp_aBcDeFgHiJkLmN"\n       "oPqRsTuVwXyZ0123456789")\n',
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    "ops@example.com\n",
]


def document(size: int) -> str:
    parts = []
    i = total = 0
    while total < size:
        parts.append(FUNCTION.format(i=i))
        if i % 97 == 5:
            parts.append(SECRETS[i % len(SECRETS)])
        total += len(parts[-1]) + (len(parts[-2]) if i % 97 == 5 else 0)
        i += 1
    return "".join(parts)


def spans(text: str, findings: tuple[content.Finding, ...]) -> list[tuple[str, int, int, int]]:
    return [(f.type, f.start, f.end, f.line) for f in findings if f.kind != "detector"]


def imports(findings: tuple[content.Finding, ...]) -> set[tuple[int, int]]:
    return {(f.start, f.end) for f in findings if f.kind == "detector"}


edits = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1),
        st.integers(min_value=0, max_value=40),
        st.sampled_from(["x", "\n", "", '"', "\n\n", *SECRETS]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None)
@given(edits=edits)
def test_incremental_scan_equals_a_fresh_scan(edits: list[tuple[float, int, str]]) -> None:
    text = document(100_000)
    scanner = ContentScanner()
    scanner.scan(text, "python", POLICY, key="doc")
    for where, removed, inserted in edits:
        pos = int(where * len(text))
        text = text[:pos] + inserted + text[pos + removed :]
        incremental = scanner.scan(text, "python", POLICY, key="doc")
        fresh = ContentScanner().scan(text, "python", POLICY)
        assert spans(text, incremental) == spans(text, fresh)
        # An edit that leaves a string open hides the imports after it from a full parse
        # only; the incremental parse keeps them (it can only raise).
        assert imports(fresh) <= imports(incremental)


def test_a_keystroke_rescans_only_the_chunks_it_touches(monkeypatch: object) -> None:
    text = document(1_000_000)
    scanner = ContentScanner()
    scanner.scan(text, "python", POLICY, key="big")
    calls = []
    real = content._scan_window

    def counting(window: str, *args: object) -> object:
        calls.append(len(window))
        return real(window, *args)  # type: ignore[arg-type]

    setattr(content, "_scan_window", counting)  # noqa: B010 - restored below
    try:
        pos = text.index("\n", len(text) // 2) + 1
        edited = text[:pos] + "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 " + text[pos:]
        found = scanner.scan(edited, "python", POLICY, key="big")
    finally:
        setattr(content, "_scan_window", real)  # noqa: B010
    assert 1 <= len(calls) <= 3 and sum(calls) < 64_000
    assert [f for f in found if f.start == pos and f.type == "github-token"]
    assert spans(edited, found) == spans(edited, ContentScanner().scan(edited, "python", POLICY))


@pytest.mark.parametrize(
    ("head", "tail", "ftype", "value"),
    [
        (
            'K = ("ghp_aBcDeFgHiJkLmN"\n',
            '     "oPqRsTuVwXyZ0123456789")\n',
            "github-token",
            'ghp_aBcDeFgHiJkLmN"\n\n     "oPqRsTuVwXyZ0123456789',
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\n",
            "MIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
            "private-key",
            "-----BEGIN RSA PRIVATE KEY-----\n\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        ),
        (
            "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\n",
            "AAAAIBSECRET\nPrivate-MAC: 0a1b\n",
            "putty-private-key",
            "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\n\nAAAAIBSECRET\n"
            "Private-MAC: 0a1b",
        ),
    ],
)
def test_secrets_straddling_a_chunk_border_are_found(
    head: str, tail: str, ftype: str, value: str
) -> None:
    base = "".join(FUNCTION.format(i=i) for i in range(1_000))
    border = _bounds(base, 0, len(base))[1][1]  # right after a blank line
    # head goes before that blank line (the chunk border follows it), tail after it
    text = base[: border - 1] + head + "\n" + tail + base[border:]
    start = border - 1
    cut = [end for _, end in _bounds(text, 0, len(text))]
    assert any(start < end <= start + len(head) + 1 for end in cut)
    found = ContentScanner().scan(text, "python", POLICY)
    assert [(f.type, text[f.start : f.end]) for f in found] == [(ftype, value)]


def test_bulk_emails_count_over_the_whole_document() -> None:
    text = document(300_000)
    emails = [f for f in ContentScanner().scan(text, "python", POLICY) if f.type == "email"]
    assert text.count("ops@example.com") >= 3 and len(emails) == text.count("ops@example.com")


@settings(max_examples=25, deadline=None)
@given(edits=edits)
def test_tree_sitter_detectors_incremental_equals_full(
    edits: list[tuple[float, int, str]],
) -> None:
    text = "import os\n" + document(80_000)
    key = f"ts-{id(edits)}"
    tree_sitter_findings(text, "python", POLICY, key)
    for where, removed, inserted in edits:
        pos = int(where * len(text))
        text = text[:pos] + inserted + text[pos + removed :]
        incremental = tree_sitter_findings(text, "python", POLICY, key)
        full = tree_sitter_findings(text, "python", POLICY, None)
        # An edit that leaves a string open hides later imports from a full parse only.
        assert {(f.start, f.end) for f in full} <= {(f.start, f.end) for f in incremental}
        for f in incremental:
            assert text[f.start : f.end] == "stripe"
            assert text.count("\n", 0, f.start) + 1 == f.line


def test_import_stripe_far_from_the_cursor_is_found_after_edits() -> None:
    text = "import stripe\n" + document(1_000_000)
    scanner = ContentScanner()
    for n in range(5):
        pos = len(text) - 1000 * (n + 1)
        text = text[:pos] + "x" + text[pos:]
        found = [
            f for f in scanner.scan(text, "python", POLICY, key="far") if f.type == "stripe-sdk"
        ]
        assert [(f.start, f.line) for f in found][:1] == [(7, 1)]


def test_a_new_policy_is_not_answered_from_the_old_ones_chunks() -> None:
    text = document(200_000)
    scanner = ContentScanner()
    pii_off = parse_policy(PII_OFF, "o.toml")
    for _ in range(12):  # more policies than the scanner keeps slots for
        with_pii = scanner.scan(text, "python", POLICY, key="doc")
        without = scanner.scan(text, "python", pii_off, key="doc")
        assert {f.kind for f in with_pii} >= {"pii", "secret"}
        assert "pii" not in {f.kind for f in without}
        pii_off = parse_policy(PII_OFF, "o.toml")  # a new object, maybe at a reused id
