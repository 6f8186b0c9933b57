"""``onbox-label`` and ``onbox-tags`` from ``.gitattributes``, with git's semantics.

What git does (``attr.c``; this module reproduces it and
``tests/unit/test_classification_attributes.py`` checks it against ``git check-attr``
on generated repositories):

* files are read from the repository root down to the file's directory, then
  ``$GIT_COMMON_DIR/info/attributes``; later files and later lines take precedence,
  and the last matching line wins *per attribute*; within a line the last state wins;
* a pattern without a slash matches the basename at any depth below its file; one with
  a slash is relative to the directory of its file (one leading ``/`` is dropped);
  ``dir/`` matches only the directory itself, never the files in it (use ``dir/**``);
  matching is :mod:`onbox.classification.wildmatch`, byte for byte;
* a pattern may be C-quoted (``"caf\\303\\251.txt"``: octal escapes are bytes, so that
  is ``café.txt`` in UTF-8); a quote that does not parse is taken literally;
* negative patterns (``!pat``) are ignored; ``-attr`` unsets and ``!attr`` unspecifies;
  a line with an invalid attribute name, or 2048 bytes or longer, is ignored whole;
* ``[attr]name ...`` macros may be defined in the root file and in ``info/attributes``
  and are resolved when a path is matched, across every file: the definition with the
  highest precedence wins, a macro may use macros, and a set macro expands only where
  each of its attributes is still undecided. A line that unsets a macro (``-secret``)
  decides it, so lower-precedence lines that set it no longer expand it;
* a ``.gitattributes`` that is a symbolic link is not read; ``core.ignorecase = true``
  makes matching case-insensitive (ASCII letters, git's way).

The system and global attributes files (``core.attributesFile``) are not read: labels
must not depend on a user's home directory.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from onbox.classification import wildmatch
from onbox.classification.patterns import LazyRegex

logger = logging.getLogger(__name__)

WATCHED = ("onbox-label", "onbox-tags")
UNSET = "\x00unset"  # "-attr"
UNSPECIFIED = "\x00unspecified"  # "!attr"
SET = "\x00set"  # "attr" without a value
MAX_LINE_LENGTH = 2048  # git's ATTR_MAX_LINE_LENGTH: longer lines are ignored

_BLANK = " \t\r\n"
_BLANKS = re.compile(r"[ \t\r\n]+")
_NAME = re.compile(r"[-_.A-Za-z0-9]+")
_BOM = "\xef\xbb\xbf"  # UTF-8 byte order mark, as Latin-1 bytes text
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES.update({'"': '"', "\\": "\\"})

State = tuple[str, str]  # (attribute name, value or SET / UNSET / UNSPECIFIED)


@dataclass(frozen=True)
class AttributeValue:
    """The state of one attribute for one path, and the line that gave it."""

    value: str  # a string value, or SET / UNSET / UNSPECIFIED
    source: str  # "path/to/.gitattributes:line" relative to the repo root
    via: str = ""  # the macros it came through: "macro vaulted (.gitattributes:1)"


@dataclass(frozen=True)
class Macro:
    """One ``[attr]name states`` definition."""

    states: tuple[State, ...]
    source: str


@dataclass
class _Rule:
    base: str  # directory of the attributes file, relative to root, "" or "a/b/" (bytes text)
    basename_only: bool
    regex: LazyRegex
    literals: tuple[str, ...]
    states: tuple[State, ...]
    names: frozenset[str]
    source: str


@dataclass
class AttributesFile:
    """The parsed pattern lines and macro definitions of one attributes file."""

    rules: list[_Rule] = field(default_factory=list)
    macros: dict[str, Macro] = field(default_factory=dict)
    _relevant: dict[frozenset[str], list[_Rule]] = field(default_factory=dict, repr=False)

    def relevant_rules(self, relevant: frozenset[str]) -> list[_Rule]:
        """The rules that touch an attribute in ``relevant``, last line first (memoised)."""
        rules = self._relevant.get(relevant)
        if rules is None:
            rules = [rule for rule in reversed(self.rules) if not rule.names.isdisjoint(relevant)]
            self._relevant[relevant] = rules
        return rules


def _unquote(text: str) -> tuple[str, str] | None:
    """git's ``unquote_c_style`` on ``text[0] == '"'``: (pattern, rest), or ``None``."""
    out: list[str] = []
    i, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(out), text[i + 1 :]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt and nxt in "0123" and re.fullmatch(r"[0-7]{2}", text[i + 2 : i + 4]):
            out.append(chr(int(text[i + 1 : i + 4], 8)))  # one byte (bytes text)
            i += 4
        else:
            return None
    return None


def _states(text: str) -> tuple[State, ...] | None:
    """The states of a line, or ``None`` when git rejects the line (a bad name)."""
    states: list[State] = []
    for token in _BLANKS.split(text):
        if not token:
            continue
        head, equals, value = token.partition("=")
        name = head[1:] if head[:1] in ("-", "!") else head
        if not _NAME.fullmatch(name) or name.startswith("-"):
            return None
        if head[:1] == "-":
            states.append((name, UNSET))
        elif head[:1] == "!":
            states.append((name, UNSPECIFIED))
        else:
            states.append((name, value if equals else SET))
    return tuple(states)


def _display_text(text: str) -> str:
    """Bytes text back to readable text for messages."""
    return text.encode("latin-1").decode("utf-8", "replace")


def parse_attributes(
    text: str, base: str, display: str, *, allow_macros: bool, ignore_case: bool
) -> AttributesFile:
    """Parse one attributes file (``text`` read with ``errors="surrogateescape"``).

    ``base`` is the file's directory relative to the repo root ("" or ``"a/b/"``).
    Macros are kept apart: they are resolved at :func:`lookup` time across all files.
    """
    result = AttributesFile()
    data = wildmatch.to_bytes_text(text)
    base = wildmatch.to_bytes_text(base)
    if ignore_case:
        base = wildmatch.casefold(base)
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    lines = data.split("\n")
    for number, raw in enumerate(lines, start=1):
        if number < len(lines) and raw.endswith("\r"):
            raw = raw[:-1]  # strbuf_getline drops the CR of a CRLF
        line = raw.split("\0", 1)[0]  # git handles a line as a C string
        start = line.lstrip(_BLANK)
        if not start or start.startswith("#"):
            continue
        where = f"{display}:{number}"
        if len(line) >= MAX_LINE_LENGTH:
            logger.warning("%s: ignoring a line of %d bytes, as git does", where, len(line))
            continue
        unquoted = _unquote(start) if start.startswith('"') else None
        if unquoted is not None:
            name, rest = unquoted
        else:
            name, rest = _split_blank(start)
        states = _states(rest)
        if len(name) > len("[attr]") and name.startswith("[attr]"):
            macro = name[len("[attr]") :].lstrip(_BLANK)
            macro = _split_blank(macro)[0].split("\0", 1)[0]
            if not allow_macros:
                logger.warning("%s: [attr]%s is not allowed here (git ignores it)", where, macro)
                continue
            if states is None or not _NAME.fullmatch(macro) or macro.startswith("-"):
                logger.warning("%s: invalid macro definition, ignored as git does", where)
                continue
            result.macros[macro] = Macro(states, where)
            continue
        name = name.split("\0", 1)[0]
        if states is None:
            logger.warning("%s: invalid attribute name, the line is ignored as git does", where)
            continue
        if name.startswith("!"):
            logger.debug("%s: negative patterns are ignored in attributes", where)
            continue
        rule = _rule(name, base, states, where, ignore_case)
        if rule is not None:
            result.rules.append(rule)
    return result


def _split_blank(text: str) -> tuple[str, str]:
    """(text up to the first blank, the rest)."""
    match = re.search(r"[ \t\r\n]", text)
    if match is None:
        return text, ""
    return text[: match.start()], text[match.start() :]


def _rule(
    pattern: str, base: str, states: tuple[State, ...], where: str, ignore_case: bool
) -> _Rule | None:
    if not states or pattern.endswith("/") or not pattern:
        return None  # no attributes, or a directory-only pattern: never a file
    basename_only = "/" not in pattern
    body = pattern[1:] if pattern.startswith("/") else pattern
    glob = wildmatch.translate(body, pathname=not basename_only, fold=ignore_case)
    if glob is None:
        logger.debug("%s: pattern %r can never match (git aborts on it)", where, pattern)
        return None
    return _Rule(
        base=base,
        basename_only=basename_only,
        regex=LazyRegex(glob.source, re.DOTALL, translate=_identity),
        literals=glob.literals,
        states=states,
        names=frozenset(name for name, _ in states),
        source=where,
    )


def _identity(source: str) -> str:
    return source


def _macro_table(files: list[AttributesFile]) -> dict[str, Macro]:
    table: dict[str, Macro] = {}
    for attributes in files:  # lowest precedence first: later definitions win
        table.update(attributes.macros)
    return table


def _relevant(macros: dict[str, Macro]) -> frozenset[str]:
    """The watched attributes and every macro that can reach one, however indirectly."""
    relevant = set(WATCHED)
    grew = True
    while grew:
        grew = False
        for name, macro in macros.items():
            if name not in relevant and any(n in relevant for n, _ in macro.states):
                relevant.add(name)
                grew = True
    return frozenset(relevant)


def states_of(
    files: list[AttributesFile], path: str, *, ignore_case: bool = False
) -> dict[str, AttributeValue]:
    """Every decided watched attribute of ``path``, unset and unspecified included.

    ``files`` are ordered lowest precedence first (root, subdirectories, info/attributes);
    ``path`` is repo-relative, "/"-separated, a file.
    """
    macros = _macro_table(files)
    relevant = _relevant(macros)
    subject = wildmatch.to_bytes_text(path)
    if ignore_case:
        subject = wildmatch.casefold(subject)
    basename = subject.rsplit("/", 1)[-1]
    decided: dict[str, AttributeValue] = {}
    for attributes in reversed(files):
        for rule in attributes.relevant_rules(relevant):
            if decided and all(name in decided for name in rule.names if name in relevant):
                continue
            if rule.base and not subject.startswith(rule.base):
                continue
            probe = basename if rule.basename_only else subject[len(rule.base) :]
            if any(part not in probe for part in rule.literals):
                continue
            if rule.regex.fullmatch(probe) is None:
                continue
            _fill(rule, macros, decided)
            if all(name in decided for name in WATCHED):
                return {name: decided[name] for name in WATCHED}
    return {name: decided[name] for name in WATCHED if name in decided}


def _fill(rule: _Rule, macros: dict[str, Macro], decided: dict[str, AttributeValue]) -> None:
    """git's ``fill_one``: last state first, a set macro expanded where it is decided."""
    stack = [(reversed(rule.states), "")]
    while stack:
        states, via = stack[-1]
        state = next(states, None)
        if state is None:
            stack.pop()
            continue
        name, value = state
        if name in decided:
            continue
        decided[name] = AttributeValue(value, rule.source, via)
        macro = macros.get(name)
        if value == SET and macro is not None:
            step = f"macro {name} ({macro.source})"
            stack.append((reversed(macro.states), f"{via} → {step}" if via else step))


def lookup(
    files: list[AttributesFile], path: str, *, ignore_case: bool = False
) -> dict[str, AttributeValue]:
    """Watched attributes of ``path`` that are set or have a value (bytes decoded)."""
    found = states_of(files, path, ignore_case=ignore_case)
    return {
        name: AttributeValue(
            value.value if value.value == SET else _display_text(value.value),
            value.source,
            value.via,
        )
        for name, value in found.items()
        if value.value not in (UNSET, UNSPECIFIED)
    }


def attribute_files_for(root: Path, rel_path: str, info_attributes: str) -> list[tuple[str, str]]:
    """(absolute file, base) pairs that can affect ``rel_path``, lowest precedence first."""
    top = str(root)
    pairs = [(os.path.join(top, ".gitattributes"), "")]
    parts = rel_path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        base = "/".join(parts[:depth]) + "/"
        pairs.append((os.path.join(top, base, ".gitattributes"), base))
    pairs.append((info_attributes, ""))
    return pairs


def read_files(
    root: Path, rel_path: str, info_attributes: str, *, ignore_case: bool = False
) -> list[AttributesFile]:
    """Every attributes file that can affect ``rel_path``, parsed now (no cache)."""
    files = []
    for absolute, base in attribute_files_for(root, rel_path, info_attributes):
        is_info = absolute == info_attributes
        if not is_info and os.path.islink(absolute):
            continue  # git does not follow an in-tree .gitattributes symlink
        try:
            with open(absolute, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                text = handle.read()
        except OSError:
            continue
        display = ".git/info/attributes" if is_info else f"{base}.gitattributes"
        files.append(
            parse_attributes(
                text,
                base,
                display,
                allow_macros=is_info or base == "",
                ignore_case=ignore_case,
            )
        )
    return files


def read_attributes(
    root: Path, rel_path: str, info_attributes: str, *, ignore_case: bool = False
) -> dict[str, AttributeValue]:
    """Watched attributes of ``rel_path``, reading every relevant file now (no cache)."""
    files = read_files(root, rel_path, info_attributes, ignore_case=ignore_case)
    return lookup(files, rel_path, ignore_case=ignore_case)
