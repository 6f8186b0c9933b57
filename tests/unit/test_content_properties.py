"""Generated: every detector's positives are found whatever surrounds them (issue 13 item 2)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from onbox.classification.content import ContentScanner
from onbox.classification.policy import Policy, parse_policy

POLICY: Policy = parse_policy(
    b'[policy]\nid = "p"\ndefault_label = "public"\n'
    b'[content]\nsecrets = "restricted"\npii = "internal"\n'
    b'[[detectors]]\nname = "patient-id"\nkind = "regex"\npattern = \'PAT-[0-9]{8}\'\n'
    b'label = "internal"\n',
    "p.toml",
)

#: (finding type, text to embed, the span that must be found)
POSITIVES: list[tuple[str, str, str]] = [
    ("aws-access-key", "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws-secret-key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("github-token", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", None),
    ("gitlab-token", "glpat-abcdefghij0123456789", None),
    ("slack-token", "xoxb-1234567890-abcdefghij", None),
    ("stripe-key", "sk_live_abcdefghijklmnop1234", None),
    ("google-api-key", "AIzaSyA1234567890abcdefghijklmnopqrstuv", None),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0", None),
    ("url-password", "postgres://app:S3cr3t@db.internal/app", "S3cr3t"),
    ("url-password", "mongodb+srv://u:p4ssW0rd@cluster0.example.net", "p4ssW0rd"),
    ("connection-password", "Server=db;Password=Hunter22;Database=x", "Hunter22"),
    (
        "hex-token",
        "API_TOKEN = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
    (
        "github-token",
        '"ghp_aBcDeFgHiJkLmN" + "oPqRsTuVwXyZ0123456789"',
        'ghp_aBcDeFgHiJkLmN" + "oPqRsTuVwXyZ0123456789',
    ),
    (
        "private-key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        None,
    ),
    (
        "putty-private-key",
        "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\nAAAAgQC\n"
        "Private-MAC: 0a1b",
        None,
    ),
    ("card-number", "4111 1111 1111 1111", None),
    ("card-number", "5500-0000-0000-0004", None),
    ("card-number", "4111.1111.1111.1111", None),
    ("card-number", "378282246310005", None),
    ("card-number", "3782 822463 10005", None),
    ("us-ssn", "123-45-6789", None),
    ("iban", "DE89 3704 0044 0532 0130 00", None),
    ("iban", "GB82WEST12345698765432", None),
    ("patient-id", "PAT-12345678", None),
]
#: Things that sit next to sensitive values in real text: dates, expiries, BICs,
#: numbers, keywords, code punctuation and the other positives.
FRAGMENTS = [
    "x = 1",
    "12/27",
    "exp 01/30",
    "BIC COBADEFFXXX",
    "2024-01-01",
    "1234",
    "9.99",
    "12",
    "PASSWORD",
    "IBAN",
    "card:",
    "#",
    "//",
    "(",
    ")",
    "{",
    "=",
    "é ü",
    *(text for _, text, _ in POSITIVES if "\n" not in text and '"' not in text),
]
DELIMITERS = [" ", "\n", ", ", "; ", "\t", " | ", " -> "]
surroundings = st.lists(
    st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(DELIMITERS)), max_size=6
)


@settings(max_examples=400, deadline=None)
@given(
    positive=st.sampled_from(POSITIVES),
    before=surroundings,
    after=surroundings,
    filler=st.integers(min_value=0, max_value=3),
)
def test_positives_are_found_in_any_surroundings(
    positive: tuple[str, str, str | None],
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    filler: int,
) -> None:
    ftype, value, span = positive
    span = span or value
    head = "".join(fragment + delimiter for fragment, delimiter in before)
    tail = "".join(delimiter + fragment for fragment, delimiter in after)
    # filler moves the value across chunk borders of large documents
    padding = "def f():\n    return 1\n\n" * (filler * 500)
    text = padding + head + value + tail + "\n"
    findings = ContentScanner().scan(text, None, POLICY)
    start = len(padding) + len(head) + value.index(span)
    # A PuTTY key runs to the end of its Private-MAC line, whatever follows on that line.
    block = ftype == "putty-private-key"
    assert any(
        f.type == ftype
        and f.start == start
        and (text[f.start : f.end].startswith(span) if block else text[f.start : f.end] == span)
        for f in findings
    ), ([(f.type, text[f.start : f.end]) for f in findings], ftype, span)
