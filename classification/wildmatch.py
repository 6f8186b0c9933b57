"""Git's ``wildmatch`` as a regex, byte for byte, for ``.gitattributes`` patterns.

Strings here are *byte strings decoded as Latin-1* (one character per byte), so ``?``
matches one byte as in git, and a quoted ``"caf\\303\\251"`` is the same two bytes as
a literal ``café`` in a UTF-8 file. :func:`to_bytes_text` and :func:`from_bytes_text`
convert.

What git does (``wildmatch.c``), including its corners:

* with ``pathname`` (a pattern with a slash), ``*``, ``?`` and ``[...]`` never match
  ``/``; ``**`` matches across directories only when it stands between slashes or at an
  end of the pattern, otherwise it is a plain ``*``; without ``pathname`` (a basename
  pattern) ``*`` matches anything;
* ``[...]``: ``!`` or ``^`` negates, a leading ``]`` is literal, ``a-z`` ranges,
  ``[:alpha:]`` classes (an unknown class, an unclosed ``[`` or a trailing ``\\``
  make the pattern match nothing at all);
* with ``casefold`` (``core.ignorecase``) git lower-cases the path and the literal
  pattern characters, but not the characters inside brackets or after ``\\``: with
  ``core.ignorecase`` ``[A]`` matches neither ``a`` nor ``A``. :func:`casefold` gives the
  path as git compares it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UPPER = frozenset(range(ord("A"), ord("Z") + 1))
_LOWER = frozenset(range(ord("a"), ord("z") + 1))
_DIGIT = frozenset(range(ord("0"), ord("9") + 1))
_CLASSES: dict[str, frozenset[int]] = {
    "alnum": _UPPER | _LOWER | _DIGIT,
    "alpha": _UPPER | _LOWER,
    "blank": frozenset(b" \t"),
    "cntrl": frozenset([*range(0x20), 0x7F]),
    "digit": _DIGIT,
    "graph": frozenset(range(0x21, 0x7F)),
    "lower": _LOWER,
    "print": frozenset(range(0x20, 0x7F)),
    "punct": frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": frozenset(b" \t\n\r"),
    "upper": _UPPER,
    "xdigit": _DIGIT | frozenset(b"abcdefABCDEF"),
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class _NeverMatches(Exception):
    """git's ``WM_ABORT_ALL`` on a malformed pattern: nothing matches it."""


def to_bytes_text(text: str) -> str:
    """``text`` (from ``os.fsdecode`` or a surrogateescape read) as Latin-1 bytes text."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def from_bytes_text(text: str) -> str:
    """Inverse of :func:`to_bytes_text`; bytes that are not UTF-8 stay surrogates."""
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


def casefold(text: str) -> str:
    """``text`` lower-cased the way git does for ``core.ignorecase`` (ASCII letters only)."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Glob:
    """A translated pattern: a regex to fullmatch, and literals any match must contain."""

    source: str  # regex source, for DOTALL fullmatch
    literals: tuple[str, ...]


def _char_set(chars: set[int]) -> str:
    """A regex character class for exactly the bytes in ``chars``."""
    if not chars:
        return "(?!)"
    ordered = sorted(chars)
    parts: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], -2]:
        if value == prev + 1:
            prev = value
            continue
        first, last = re.escape(chr(start)), re.escape(chr(prev))
        parts.append(first if start == prev else f"{first}-{last}")
        start = prev = value
    return "[" + "".join(parts) + "]"


def _bracket(glob: str, i: int, *, pathname: bool, fold: bool) -> tuple[str, int]:
    """The class starting at ``glob[i] == '['``; return (regex, index after ``]``)."""
    n = len(glob)
    p = i + 1
    negated = p < n and glob[p] in "!^"
    if negated:
        p += 1
    chars: set[int] = set()
    prev = ""  # git's prev_ch; "" is 0
    while True:  # git's do { ... } while (next != ']'): the first item may be ']'
        if p >= n:
            raise _NeverMatches
        c = glob[p]
        if c == "\\":
            p += 1
            if p >= n:
                raise _NeverMatches
            c = glob[p]
            chars.add(ord(c))
        elif c == "-" and prev and p + 1 < n and glob[p + 1] != "]":
            p += 1
            c = glob[p]
            if c == "\\":
                p += 1
                if p >= n:
                    raise _NeverMatches
                c = glob[p]
            span = set(range(ord(prev), ord(c) + 1))
            chars |= span
            if fold:  # git compares an upper-cased lower-case letter with the range too
                chars |= {u + 32 for u in span & _UPPER}
            c = ""
        elif c == "[" and p + 1 < n and glob[p + 1] == ":":
            end = glob.find("]", p + 2)
            if end == -1:
                raise _NeverMatches
            name = glob[p + 2 : end]
            if len(name) < 1 or not name.endswith(":"):
                chars.add(ord("["))  # not a class: '[' is literal, go on from ':'
            else:
                members = _CLASSES.get(name[:-1])
                if members is None:
                    raise _NeverMatches
                chars |= members
                if fold and name[:-1] == "upper":
                    chars |= _LOWER
                p = end
                c = ""
        else:
            chars.add(ord(c))
        prev = c
        p += 1
        if p >= n:
            raise _NeverMatches
        if glob[p] == "]":
            break
    if negated:
        chars = set(range(256)) - chars
    if pathname:
        chars.discard(ord("/"))
    return _char_set(chars), p + 1


def translate(glob: str, *, pathname: bool, fold: bool) -> Glob | None:
    """``glob`` (bytes text) as a :class:`Glob`, or ``None`` when git matches nothing.

    ``pathname`` is git's ``WM_PATHNAME``; with ``fold`` the subject must be passed
    through :func:`casefold` first.
    """
    try:
        return _translate(glob, pathname=pathname, fold=fold)
    except _NeverMatches:
        return None


def _translate(glob: str, *, pathname: bool, fold: bool) -> Glob:
    out: list[str] = []
    literals: list[str] = []
    run: list[str] = []

    def end_run() -> None:
        text = "".join(run).strip("/")
        if text:
            literals.append(text)
        run.clear()

    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            end_run()
            bounded_left = i == 0 or glob[i - 1] == "/"
            bounded_right = j == n or glob[j] == "/" or glob.startswith("\\/", j)
            if not pathname:
                out.append(".*")
            elif j - i >= 2 and bounded_left and bounded_right:
                if j < n and glob[j] == "/":
                    out.append("(?:.*/)?")  # zero or more directories
                    j += 1
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            end_run()
            out.append("[^/]" if pathname else ".")
            i += 1
        elif c == "[":
            end_run()
            piece, i = _bracket(glob, i, pathname=pathname, fold=fold)
            out.append(piece)
        elif c == "\\":
            if i + 1 >= n:
                raise _NeverMatches
            end_run()
            out.append(re.escape(glob[i + 1]))  # git does not fold an escaped character
            i += 2
        else:
            ch = casefold(c) if fold else c
            run.append(ch)
            out.append(re.escape(ch))
            i += 1
    end_run()
    return Glob("".join(out), tuple(literals))
