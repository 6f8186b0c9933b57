"""Content findings: secrets, PII, entropy in literals, policy detectors, spans."""

from __future__ import annotations

import pytest

from onbox.classification.content import (
    iban_valid,
    luhn_valid,
    scan_content,
    shannon_entropy,
    ssn_valid,
)
from onbox.classification.markers import find_marker
from onbox.classification.policy import Policy, builtin_policy, parse_policy

POLICY = parse_policy(
    b"""
[policy]
id = "c"
default_label = "restricted"

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

[[detectors]]
name = "patient-id"
kind = "regex"
pattern = 'PAT-[0-9]{8}'
label = "internal"
""",
    "c.toml",
)

SECRETS = {
    "aws-access-key": 'key = "AKIAIOSFODNN7EXAMPLE"',
    "aws-secret-key": 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    "github-token": 'tok = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"',
    "gitlab-token": 'tok = "glpat-abcdefghij0123456789"',
    "slack-token": 'tok = "xoxb-1234567890-abcdefghij"',
    "slack-webhook": 'url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"',
    "stripe-key": 'stripe.api_key = "sk_live_abcdefghijklmnop1234"',
    "google-api-key": 'k = "AIzaSyA1234567890abcdefghijklmnopqrstuv"',
    "jwt": 't = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0"',
    "private-key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----",
}


@pytest.mark.parametrize(("ftype", "line"), SECRETS.items())
def test_builtin_secrets(ftype: str, line: str) -> None:
    text = f"# header é\n{line}\nx = 1\n"
    findings = [f for f in scan_content(text, "python", POLICY) if f.type == ftype]
    assert len(findings) == 1, scan_content(text, "python", POLICY)
    finding = findings[0]
    assert finding.kind == "secret" and finding.label.name == "restricted"
    assert finding.line == 2
    value = text[finding.start : finding.end]
    assert value and value in line  # the span is the secret (str offsets, after a non-ASCII char)
    if ftype == "aws-secret-key":
        assert value == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    if ftype == "private-key":
        assert value.endswith("-----END OPENSSH PRIVATE KEY-----")


def test_pii_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid(
        "DE89 3704 0044 0532 0130 01"
    )
    assert (
        ssn_valid("123-45-6789") and not ssn_valid("666-45-6789") and not ssn_valid("123-00-6789")
    )


def test_pii_findings_are_validated() -> None:
    text = (
        'cards = ["4111 1111 1111 1111", "4111 1111 1111 1112"]\n'
        'ssn = ["123-45-6789", "000-12-3456"]\n'
        'iban = ["GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 33"]\n'
    )
    found = [(f.type, text[f.start : f.end]) for f in scan_content(text, "python", POLICY)]
    assert ("card-number", "4111 1111 1111 1111") in found
    assert ("us-ssn", "123-45-6789") in found
    assert ("iban", "GB82 WEST 1234 5698 7654 32") in found
    assert len([t for t, _ in found if t in ("card-number", "us-ssn", "iban")]) == 3
    assert all(f.label.name == "internal" for f in scan_content(text, "python", POLICY))


def test_bulk_emails_threshold() -> None:
    two = "a@x.com b@x.com\n"
    assert not [f for f in scan_content(two, None, POLICY) if f.type == "email"]
    three = "a@x.com b@x.com c@example.org\n"
    assert len([f for f in scan_content(three, None, POLICY) if f.type == "email"]) == 3


def test_entropy_only_in_literals_and_comments() -> None:
    token = "q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE"
    assert shannon_entropy(token) > 4.0
    in_string = f'value = "{token}"\n'
    in_comment = f"# old key {token}\n"
    as_code = f"{token} = 1\n"
    for text, expected in ((in_string, 1), (in_comment, 1), (as_code, 0)):
        found = [f for f in scan_content(text, "python", POLICY) if f.type == "high-entropy-string"]
        assert len(found) == expected, text
    assert not [
        f
        for f in scan_content('name = "this_is_a_long_identifier_name"\n', "python", POLICY)
        if f.type == "high-entropy-string"
    ]


def test_entropy_in_large_documents_is_checked_per_line() -> None:
    token = "q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE"
    filler = "def f():\n    return 1\n" * 3000
    text = filler + f'secret = "{token}"\n' + f"{token}x = 2\n" + filler
    found = [
        text[f.start : f.end]
        for f in scan_content(text, "python", POLICY)
        if f.type == "high-entropy-string"
    ]
    assert found == [token]


@pytest.mark.parametrize("language", ["javascript", "go", "rust", "java", "c", "cpp", "typescript"])
def test_entropy_literal_detection_other_languages(language: str) -> None:
    token = "q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE"
    text = f'x = "{token}";\n'
    found = [f for f in scan_content(text, language, POLICY) if f.type == "high-entropy-string"]
    assert len(found) == 1


def test_policy_detectors() -> None:
    text = "import os\nimport stripe\nPATIENT = 'PAT-12345678'\n"
    found = {(f.type, text[f.start : f.end], f.line) for f in scan_content(text, "python", POLICY)}
    assert ("stripe-sdk", "stripe", 2) in found
    assert ("patient-id", "PAT-12345678", 3) in found
    # the tree-sitter detector only runs for its language
    assert not [f for f in scan_content(text, "javascript", POLICY) if f.type == "stripe-sdk"]


def test_content_off_and_builtin_policy() -> None:
    off: Policy = parse_policy(
        b'[policy]\nid = "o"\n[content]\nsecrets = "off"\npii = "off"\n', "o.toml"
    )
    text = SECRETS["github-token"] + "\nssn = '123-45-6789'\n"
    assert scan_content(text, "python", off) == ()
    assert {f.label.name for f in scan_content(text, "python", builtin_policy())} == {"restricted"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# onbox: restricted\nx = 1\n", ("restricted", 1)),
        ("#!/usr/bin/env python\n// onbox: internal\n", ("internal", 2)),
        ("\n\n\n\n/* onbox: public */\n", ("public", 5)),
        ("\n\n\n\n\n# onbox: restricted\n", None),  # line 6 is too late
        ("x = 'onbox: restricted'\n", None),  # not a comment
        ("<!-- onbox: internal -->\n", ("internal", 1)),
    ],
)
def test_markers(text: str, expected: tuple[str, int] | None) -> None:
    marker = find_marker(text)
    assert (None if marker is None else (marker.label, marker.line)) == expected


def test_minified_long_line_is_scanned_in_windows() -> None:
    token = "q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE"
    body = "var a=1;" * 20_000  # one 160 KB line
    text = body + f'var k="{token}";' + body + "\n"
    found = [text[f.start : f.end] for f in scan_content(text, "javascript", POLICY)]
    assert found == [token]
