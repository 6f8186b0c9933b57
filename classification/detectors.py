"""Built-in content detectors: the shapes of secrets and PII, their validators and spans.

Every function here is pure and works on any text (a whole document or one chunk
window of it); :mod:`onbox.classification.content` turns the spans into findings and
decides which window owns each one. Every threshold is documented in ``docs/policy.md``
("Built-in content detectors"): keep the two in step.

No miss by greed: a regex that can match more than the item itself (a card number
followed by its expiry, an IBAN followed by `` BIC COBADEFFXXX``, a password followed by
a host) only marks a *region*; every candidate span inside the region is validated on its
own (:func:`card_spans`, :func:`ssn_spans`, :func:`iban_spans`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from onbox.classification.patterns import compile_fast_regex

#: (group, finding type, kind, regex). Groups ending in "_v" narrow the span to the value.
#: Kind "block" marks a multi-line block whose end is found by :func:`block_end`.
BUILTINS: tuple[tuple[str, str, str, str], ...] = (
    ("pk", "private-key", "block", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ("ppk", "putty-private-key", "block", r"PuTTY-User-Key-File-[23]:"),
    ("ppkl", "putty-private-key", "block", r"\bPrivate-Lines: *[0-9]{1,4}\b"),
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
    (
        "urlpw",
        "url-password",
        "secret",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s/?#@:\"'`<>]*:(?P<urlpw_v>[^\s/?#@\"'`<>]+)@[A-Za-z0-9\[]",
    ),
    (
        "connpw",
        "connection-password",
        "secret",
        r"[;\"'?&](?i:[ \t]*(?:password|passwd|pwd)[ \t]*=[ \t]*)(?P<connpw_v>[^;\"'&\s]+)",
    ),
    (
        "hexname",
        "hex-token",
        "secret",
        r"(?i:secret|token|pass|pwd|key|auth|credential|bearer)[A-Za-z0-9_.-]{0,40}[\"']?"
        r"[ \t]*(?::=|=>|[:=])[ \t]*(?:[bBrRuU]{0,2}[\"'`])?(?P<hexname_v>[0-9a-fA-F]{32,})\b",
    ),
    ("num", "card-number", "pii", r"\b[0-9](?:[ .-]?[0-9]){8,}\b"),
    ("iban", "iban", "pii", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"),
    (
        "email",
        "email",
        "pii",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    ),
)
TYPES = {group: (ftype, kind) for group, ftype, kind, _ in BUILTINS}
COMBINED = compile_fast_regex("|".join(f"(?P<{g}>{rx})" for g, _, _, rx in BUILTINS))
INDEX: dict[str, int] = dict(COMBINED.groupindex)  # re2 wants group numbers

PK_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PPK_MAC = re.compile(r"^Private-MAC:[^\n]*", re.MULTILINE)
_PPK_LINES = re.compile(r"^Private-Lines: *([0-9]{1,4})[ \t\r]*$", re.MULTILINE)
PPK_MAX = 64 * 1024  # a .ppk file is a few KB; look no further for its Private-MAC line

#: A run of string literals joined by nothing, ``+``, ``.``, ``..`` or ``||``.
_LITERAL = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
LITERAL = re.compile(_LITERAL)
LITERAL_CHAIN = compile_fast_regex(
    rf"(?:{_LITERAL})(?:\s*(?:\+|\.\.?|\|\|)?\s*[bBrRuUfF]{{0,2}}(?:{_LITERAL}))+"
)
#: Where a token could continue from one literal into the next: a token character, the
#: closing quote, a joiner, the opening quote, a token character. Chains without one
#: (docstrings' ``""``, ``"a", "b"``) are not joined.
JUNCTION = compile_fast_regex(
    r"[A-Za-z0-9_+/=:-][\"']\s*(?:\+|\.\.?|\|\|)?\s*[bBrRuUfF]{0,2}[\"'][A-Za-z0-9_+/=:-]"
)
CHAIN_REACH = 512  # characters past a chunk's end in which a chain's pieces are looked for

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
    "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip

#: Card layouts besides one unbroken group of 13-19 digits (4-4-4-1 … 4-4-4-4-3 are
#: "fours with a last group of one to four"; 4-6-5 is Amex, 4-6-4 Diners).
_CARD_LAYOUTS = frozenset(
    {(4, 4, 4, n) for n in range(1, 5)} | {(4, 4, 4, 4, n) for n in range(1, 4)}
) | {(4, 6, 5), (4, 6, 4)}
_GROUP = re.compile(r"[0-9]+")

#: Values that stand for a password rather than being one (docs and templates).
_PLACEHOLDERS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "changeme", "example", "redacted"}
)
_PLACEHOLDER_START = ("$", "{", "%", "<", "[", "(")

#: Entropy rule (see :func:`entropy_secret`): the floor for values assigned to a
#: secret-ish name; everything else needs ``[content] entropy_threshold``.
ASSIGNED_ENTROPY_FLOOR = 3.0
_SECRET_WORDS = frozenset(
    {
        "secret", "secrets", "token", "tokens", "password", "passwd", "passphrase", "pwd",
        "pass", "credential", "credentials", "auth", "bearer", "apikey", "privkey",
    }
)  # fmt: skip
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"),
        ("signing", "key"), ("encryption", "key"), ("master", "key"), ("session", "key"),
        ("client", "key"), ("auth", "key"),
    }
)  # fmt: skip
#: A name ending in one of these holds a digest, an id or metadata, not the secret.
_NOT_SECRET_SUFFIXES = frozenset(
    {
        "hash", "hashed", "digest", "sha", "sha1", "sha256", "sha512", "md5", "checksum",
        "fingerprint", "id", "uuid", "guid", "etag", "commit", "rev", "url", "uri",
        "endpoint", "path", "file", "name", "type", "len", "length", "size", "count",
        "header", "field", "env", "var", "prefix",
    }
)  # fmt: skip
_NAME_WORD = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
#: ``NAME = "``, ``"NAME": '``, ``NAME := ``, ``:NAME => "`` … at the end of a line prefix.
_ASSIGNED = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?[ \t]*(?::=|=>|[:=])[ \t]*(?:[bBrRuU]{0,2}[\"'`])?$"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
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


def _groups(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [m.span() for m in _GROUP.finditer(text, start, end)]


def card_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Every card number in the digit run ``text[start:end]``.

    Tries every run of consecutive digit groups with one kind of separator: one group of
    13-19 digits, or a known layout (4-4-4-4, 4-4-4-4-3, 4-6-5 …); the first digit is 2-6,
    the digits are not all the same and pass Luhn.
    """
    groups = _groups(text, start, end)
    for i, (first, _) in enumerate(groups):
        if text[first] not in "23456":
            continue
        sep = None
        lengths: list[int] = []
        for j in range(i, len(groups)):
            s, e = groups[j]
            if j > i:
                between = text[groups[j - 1][1] : s]
                if sep is None:
                    sep = between
                elif between != sep:
                    break
            lengths.append(e - s)
            total = sum(lengths)
            if total > 19:
                break
            if total < 13 or (len(lengths) > 1 and tuple(lengths) not in _CARD_LAYOUTS):
                continue
            digits = "".join(text[a:b] for a, b in groups[i : j + 1])
            if len(set(digits)) > 1 and luhn_valid(digits):
                yield first, e


def ssn_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Every US SSN (``ddd-dd-dddd`` with valid ranges) in the digit run ``text[start:end]``.

    The SSN may sit between other groups, but not inside a longer dash-joined number.
    """
    groups = _groups(text, start, end)
    for i in range(len(groups) - 2):
        (a, b), (c, d), (e, f) = groups[i : i + 3]
        if (b - a, d - c, f - e) != (3, 2, 4) or text[b] != "-" or text[d] != "-":
            continue
        if (a > start and text[a - 1] == "-") or (f < end and text[f] == "-"):
            continue
        if ssn_valid(text[a:f]):
            yield a, f


def iban_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Every IBAN that starts inside the region ``text[start:end]``.

    The country's length decides where the IBAN ends, so whatever follows it (a BIC, more
    words) is never part of the candidate; a candidate may start at the region's start or
    after any space in it.
    """
    for pos in range(start, end - 3):
        if pos > start and text[pos - 1] != " ":
            continue
        length = IBAN_LENGTHS.get(text[pos : pos + 2])
        if length is None or not text[pos + 2 : pos + 4].isdigit():
            continue
        count, cursor, limit = 0, pos, min(len(text), pos + 2 * length)
        while cursor < limit and count < length:
            char = text[cursor]
            if char.isascii() and char.isalnum():
                count += 1
            elif char != " " or text[cursor - 1] == " ":
                break
            cursor += 1
        following = text[cursor : cursor + 1]
        if count == length and not (following.isascii() and following.isalnum()):
            if iban_valid(text[pos:cursor]):
                yield pos, cursor


def real_password(value: str) -> bool:
    """Whether a password-shaped value is a real one, not a template or placeholder."""
    if value.startswith(_PLACEHOLDER_START) or value.lower() in _PLACEHOLDERS:
        return False
    return not set(value) <= set("*xX.")


def secret_name(name: str) -> bool:
    """Whether an identifier names a secret (``API_TOKEN``, ``dbPassword``, ``private_key``).

    Its words (split at ``_ . -`` and camelCase) hold a secret word or pair, and its last
    word is not a digest, id or metadata word (``PASSWORD_SHA256``, ``token_url``).
    """
    words = [w.lower() for w in _NAME_WORD.findall(name)]
    bare = [w.rstrip("0123456789") or w for w in words]  # "key2" -> "key", "sha256" stays
    if not words or words[-1] in _NOT_SECRET_SUFFIXES or bare[-1] in _NOT_SECRET_SUFFIXES:
        return False
    if any(w in _SECRET_WORDS for w in bare):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(bare))


def name_before(text: str, pos: int) -> str:
    """The identifier that ends at or runs through ``pos``, extended both ways."""
    start = pos
    while start > 0 and text[start - 1] in _NAME_CHARS:
        start -= 1
    stop = pos
    while stop < len(text) and text[stop] in _NAME_CHARS:
        stop += 1
    return text[start:stop]


def assigned_name(line_prefix: str) -> str | None:
    """The name a value is assigned to, if ``line_prefix`` ends with ``NAME = "`` or alike."""
    match = _ASSIGNED.search(line_prefix[-200:])
    return match.group("name") if match else None


def digest_shaped(token: str) -> bool:
    """Whether ``token`` is hexadecimal or a canonical UUID (a digest or an id)."""
    return _HEX.fullmatch(token) is not None or _UUID.fullmatch(token) is not None


def entropy_secret(token: str, line_prefix: str, threshold: float) -> bool:
    """The entropy rule for a candidate already known to sit in a literal or comment.

    A token is a secret when its entropy is at least ``threshold`` and it is not
    hexadecimal or a UUID, or when its entropy is at least :data:`ASSIGNED_ENTROPY_FLOOR`
    and it is the value assigned to a :func:`secret_name` (a keyword elsewhere on the
    line is not enough: ``check(PASSWORD, sha256)`` is not a secret).
    """
    entropy = shannon_entropy(token)
    if entropy >= threshold and not digest_shaped(token):
        return True
    if entropy < ASSIGNED_ENTROPY_FLOOR:
        return False
    name = assigned_name(line_prefix)
    return name is not None and secret_name(name)


def valid_value(group: str, text: str, start: int, end: int, match_start: int) -> bool:
    """Validate a secret whose span is a group's value (passwords, hex tokens)."""
    value = text[start:end]
    if group in ("urlpw", "connpw"):
        return real_password(value)
    if group == "hexname":
        name = name_before(text, match_start)
        return secret_name(name) and len(set(value)) >= 6
    return True


def block_end(text: str, group: str, start: int, end: int, limit: int) -> int | None:
    """Where the block opened by ``text[start:end]`` ends, looking no further than ``limit``.

    ``None`` when the answer needs text past ``limit``. With the whole text: a private key
    block without its END line runs to the end of the text (a truncated key is still a
    key); ``Private-Lines: N`` covers the N lines after it; a PuTTY header covers the key
    file up to its ``Private-MAC`` line (within :data:`PPK_MAX` characters), else its
    ``Private-Lines`` block, else only the header line.
    """
    complete = limit >= len(text)
    if group == "pk":
        tail = PK_END.search(text, end, limit)
        return tail.end() if tail else (len(text) if complete else None)
    if group == "ppkl":
        return _after_lines(text, end, int(text[start:end].rsplit(":", 1)[1]), limit)
    reach = end + PPK_MAX
    mac = _PPK_MAC.search(text, end, min(limit, reach))
    if mac is not None:
        return mac.end()
    if limit < reach and not complete:
        return None
    lines = _PPK_LINES.search(text, end, min(limit, reach))
    if lines is not None:
        return _after_lines(text, lines.end(), int(lines.group(1)), limit)
    line_end = text.find("\n", end)
    return len(text) if line_end == -1 else line_end


def _after_lines(text: str, pos: int, count: int, limit: int) -> int | None:
    """The end of the ``count``-th line after the line holding ``pos``."""
    cursor = text.find("\n", pos, limit)
    for _ in range(count):
        if cursor == -1:
            break
        cursor = text.find("\n", cursor + 1, limit)
    if cursor != -1:
        return cursor
    return len(text) if limit >= len(text) else None


@dataclass(frozen=True)
class Piece:
    """One string literal of a chain: where its content starts in the text and the content."""

    offset: int
    content: str


def literal_chains(text: str) -> Iterator[list[Piece]]:
    """Chains of two or more string literals in ``text`` that a token could span."""
    if JUNCTION.search(text) is None:
        return
    for chain in LITERAL_CHAIN.finditer(text):
        if JUNCTION.search(chain.group()) is None:
            continue
        base = chain.start()
        yield [
            Piece(base + lit.start() + 1, lit.group()[1:-1])
            for lit in LITERAL.finditer(chain.group())
        ]
