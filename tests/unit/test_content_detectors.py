"""Built-in detectors added for issues 11 and 13: URL passwords, hex tokens, split literals,
PuTTY keys, candidates that a greedy match used to swallow, and the precise entropy rule."""

from __future__ import annotations

import pytest

from onbox.classification.content import scan_content
from onbox.classification.detectors import secret_name
from onbox.classification.policy import Policy, parse_policy

POLICY: Policy = parse_policy(
    b'[policy]\nid = "d"\ndefault_label = "public"\n'
    b'[content]\nsecrets = "restricted"\npii = "internal"\n',
    "d.toml",
)
HEX64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
UUID = "550e8400-e29b-41d4-a716-446655440000"
PPK = (
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
    "Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIGx0\nZm9vYmFy\n"
    "Private-Lines: 1\nAAAAIBSECRETSECRETSECRET0123\nPrivate-MAC: 5f2c0a\n"
)


def found(text: str, language: str | None = "python") -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in scan_content(text, language, POLICY)]


@pytest.mark.parametrize(
    ("text", "password"),
    [
        ('DSN = "postgres://app:S3cr3t@db.internal:5432/app"\n', "S3cr3t"),
        ('u = "mongodb+srv://u:p%40ss-9@cluster0.mongodb.net/x?retryWrites=true"\n', "p%40ss-9"),
        ("git remote add o https://user:tok3nValue@github.com/acme/x.git\n", "tok3nValue"),
        ('r = "redis://:hunter22@cache:6379/0"\n', "hunter22"),
    ],
)
def test_url_password_is_the_only_part_redacted(text: str, password: str) -> None:
    assert found(text) == [("url-password", password)]


@pytest.mark.parametrize(
    "text",
    [
        "Server=db;User Id=app;Password=Hunter22!;Database=x\n",
        'cs = "Data Source=db;pwd=Hunter22!"\n',
        "jdbc:postgresql://db/app?user=app&password=Hunter22!\n",
    ],
)
def test_connection_string_password(text: str) -> None:
    assert found(text, None) == [("connection-password", "Hunter22!")]


@pytest.mark.parametrize(
    "text",
    [
        'url = "postgres://user:${DB_PASSWORD}@db/app"\n',
        'url = "postgres://user:password@localhost/app"\n',
        'url = "postgres://user:****@localhost/app"\n',
        'url = "https://example.com:8443/path@v2"\n',
    ],
)
def test_url_placeholders_are_not_secrets(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        f'API_TOKEN = "{HEX64}"\n',
        f"client_secret: {HEX64[:32]}\n",
        f'{{"apiKey": "{HEX64[:40]}"}}\n',
        f"export DB_PASSWORD={HEX64}\n",
        f'sessionKey := "{HEX64}"\n',
    ],
)
def test_hex_token_assigned_to_a_secret_name(text: str) -> None:
    assert ("hex-token", HEX64[: len(found(text)[0][1])]) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        f'check(PASSWORD, "{HEX64}")\n',  # issue 13 item 8: a keyword elsewhere on the line
        f'PASSWORD_SHA256 = "{HEX64}"\n',
        f'token_hash = "{HEX64}"\n',
        f"# PASSWORD reset request {UUID}\n",
        f'log("password changed", user_id="{UUID}")\n',
        f'cache_key = "{HEX64}"\n',
    ],
)
def test_digests_and_uuids_near_keywords_are_not_secrets(text: str) -> None:
    assert found(text) == []


def test_uuid_assigned_to_a_secret_name_is_a_secret() -> None:
    assert found(f'HEROKU_API_KEY = "{UUID}"\n') == [("high-entropy-string", UUID)]


def test_secret_names() -> None:
    assert all(
        secret_name(n)
        for n in ("API_TOKEN", "dbPassword", "private_key", "client-secret", "apiKey2", "auth")
    )
    assert not any(
        secret_name(n)
        for n in ("PASSWORD_SHA256", "token_url", "cache_key", "tokenizer", "author", "user_id")
    )


@pytest.mark.parametrize(
    ("text", "ftype", "token"),
    [
        (
            'tok = "ghp_aBcDeFgHiJkLmN" + "oPqRsTuVwXyZ0123456789"\n',
            "github-token",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        ),
        (
            'tok = ("ghp_aBcDeFgHiJkLmN"\n       "oPqRsTuVwXyZ0123456789")\n',
            "github-token",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        ),
        (
            "const k = 'sk_live_' + 'abcdefghijklmnop1234';\n",
            "stripe-key",
            "sk_live_abcdefghijklmnop1234",
        ),
        ('$k = "AKIAIOSFOD" . "NN7EXAMPLE";\n', "aws-access-key", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_token_split_over_string_literals(text: str, ftype: str, token: str) -> None:
    hits = [(t, v) for t, v in found(text, None) if t != "high-entropy-string"]
    assert [t for t, _ in hits] == [ftype]
    value = hits[0][1]
    # The span runs from the token's first character to its last, the joiners included.
    pieces = [p for i, p in enumerate(value.replace("'", '"').split('"')) if i % 2 == 0]
    assert "".join(pieces) == token


def test_putty_key_file_is_one_finding() -> None:
    text = "x = 1\n" + PPK + "after = 2\n"
    assert found(text) == [("putty-private-key", PPK.rstrip("\n"))]


def test_putty_private_lines_block_without_header() -> None:
    text = "notes:\nPrivate-Lines: 2\nAAAAIBSECRET1\nAAAAIBSECRET2\nafter = 1\n"
    assert found(text, None) == [
        ("putty-private-key", "Private-Lines: 2\nAAAAIBSECRET1\nAAAAIBSECRET2")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 12/27\n", [("card-number", "4111 1111 1111 1111")]),
        ("exp 12/27 4111 1111 1111 1111\n", [("card-number", "4111 1111 1111 1111")]),
        ("ref 12 4111-1111-1111-1111\n", [("card-number", "4111-1111-1111-1111")]),
        ("card 4111.1111.1111.1111.\n", [("card-number", "4111.1111.1111.1111")]),
        ("amex 3782 822463 10005 exp\n", [("card-number", "3782 822463 10005")]),
        ("ssn 123-45-6789 1234 5678\n", [("us-ssn", "123-45-6789")]),
        (
            "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX\n",
            [("iban", "DE89 3704 0044 0532 0130 00")],
        ),
        ("to GB82WEST12345698765432 BIC NWBKGB2L\n", [("iban", "GB82WEST12345698765432")]),
    ],
)
def test_no_miss_by_greed(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text, None) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ips 192.168.100.200 192.168.100.201\n",
        "version 4.1.11.1111.1111.1111\n",  # not a card layout
        "ts 1700000000000 1700000000001\n",
        "phone 123-45-6789-0000\n",  # an SSN shape inside a longer dashed number
    ],
)
def test_numbers_that_are_not_cards_or_ssns(text: str) -> None:
    assert found(text, None) == []
