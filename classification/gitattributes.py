"""``onbox-label`` and ``onbox-tags`` from ``.gitattributes``, with git's semantics.

What git does (and this module reproduces; ``tests/unit/test_classification_attributes.py``
checks it against ``git check-attr``):

* files are read from the repository root down to the file's directory, then
  ``$GIT_COMMON_DIR/info/attributes``; later files and later lines take precedence,
  and the last matching line wins *per attribute*;
* a pattern without a slash matches the basename at any depth below its file; one with
  a slash is relative to the directory of its file; ``*``/``?`` never match ``/``;
* ``dir/`` matches only the directory itself, never the files in it (use ``dir/**``);
* negative patterns (``!pat``) are ignored; ``-attr`` unsets and ``!attr`` unspecifies;
* ``[attr]name ...`` macros from the root file and ``info/attributes`` are expanded;
* ``core.ignorecase = true`` makes matching case-insensitive.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from onbox.classification.patterns import LazyRegex, literal_parts

logger = logging.getLogger(__name__)

WATCHED = ("onbox-label", "onbox-tags")
UNSET = "\x00unset"  # "-attr"
UNSPECIFIED = "\x00unspecified"  # "!attr"
SET = "\x00set"  # "attr" without a value

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class AttributeValue:
    """The state of one attribute for one path, and the line that gave it."""

    value: str  # a string value, or SET / UNSET / UNSPECIFIED
    source: str  # "path/to/.gitattributes:line" relative to the repo root


@dataclass
class _Rule:
    base: str  # directory of the attributes file, relative to root, "" or "a/b/"
    basename_only: bool
    must_be_dir: bool
    regex: LazyRegex
    literals: tuple[str, ...]
    attrs: dict[str, str]
    source: str


@dataclass
class AttributesFile:
    """The parsed onbox-relevant lines of one attributes file."""

    rules: list[_Rule] = field(default_factory=list)
    macros: dict[str, dict[str, str]] = field(default_factory=dict)


def _unquote(text: str) -> tuple[str, str]:
    """Split a C-quoted pattern off the front of ``text``; return (pattern, rest)."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), text[i + 1 :]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", text[i + 1 : i + 4]):
                out.append(chr(int(text[i + 1 : i + 4], 8)))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return text, ""


def _parse_states(tokens: list[str]) -> dict[str, str]:
    states: dict[str, str] = {}
    for token in tokens:
        if token.startswith("-"):
            states[token[1:]] = UNSET
        elif token.startswith("!"):
            states[token[1:]] = UNSPECIFIED
        elif "=" in token:
            name, _, value = token.partition("=")
            states[name] = value
        else:
            states[token] = SET
    return states


def parse_attributes(
    text: str,
    base: str,
    display: str,
    *,
    allow_macros: bool,
    macros: dict[str, dict[str, str]],
    ignore_case: bool,
) -> AttributesFile:
    """Parse one attributes file; keep only lines that touch the watched attributes.

    ``base`` is the file's directory relative to the repo root ("" or ``"a/b/"``) and
    ``macros`` the macro table in force (macros defined here are added to it).
    """
    result = AttributesFile()
    flags = re.IGNORECASE if ignore_case else 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip(" \t\r")
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            pattern, rest = _unquote(line)
        else:
            pattern, _, rest = line.replace("\t", " ").partition(" ")
        tokens = rest.split()
        if pattern.startswith("[attr]"):
            if allow_macros:
                macros[pattern[len("[attr]") :]] = _parse_states(tokens)
                result.macros[pattern[len("[attr]") :]] = macros[pattern[len("[attr]") :]]
            continue
        if pattern.startswith("!"):
            logger.debug("%s:%d: negative patterns are ignored in attributes", display, number)
            continue
        states = _parse_states(tokens)
        expanded: dict[str, str] = {}
        for name, state in states.items():
            if state == SET and name in macros:
                expanded.update({k: v for k, v in macros[name].items() if k in WATCHED})
            if name in WATCHED:
                expanded[name] = state
        if not expanded or not pattern:
            continue
        must_be_dir = pattern.endswith("/")
        body = pattern.rstrip("/") if must_be_dir else pattern
        basename_only = "/" not in body
        body = body.lstrip("/") if not basename_only else body
        result.rules.append(
            _Rule(
                base=base,
                basename_only=basename_only,
                must_be_dir=must_be_dir,
                regex=LazyRegex(body, flags),
                literals=tuple(p.lower() for p in literal_parts(body))
                if ignore_case
                else literal_parts(body),
                attrs=expanded,
                source=f"{display}:{number}",
            )
        )
    return result


def lookup(
    files: list[AttributesFile], path: str, *, ignore_case: bool = False
) -> dict[str, AttributeValue]:
    """Watched attributes of ``path`` (repo-relative, "/"-separated, a file).

    ``files`` are ordered lowest precedence first (root, subdirectories, info/attributes).
    Unset and unspecified attributes are left out of the result.
    """
    found: dict[str, AttributeValue] = {}
    basename = path.rsplit("/", 1)[-1]
    probe_path = path.lower() if ignore_case else path
    for attributes in reversed(files):
        for rule in reversed(attributes.rules):
            if rule.must_be_dir or (found and all(name in found for name in rule.attrs)):
                continue
            if rule.base and not probe_path.startswith(
                rule.base.lower() if ignore_case else rule.base
            ):
                continue
            subject = basename if rule.basename_only else path[len(rule.base) :]
            probe = subject.lower() if ignore_case else subject
            if any(part not in probe for part in rule.literals):
                continue
            if rule.regex.fullmatch(subject) is None:
                continue
            for name, state in rule.attrs.items():
                found.setdefault(name, AttributeValue(state, rule.source))
        if len(found) == len(WATCHED):
            break
    return {k: v for k, v in found.items() if v.value not in (UNSET, UNSPECIFIED)}


def attribute_files_for(root: Path, rel_path: str, info_attributes: str) -> list[tuple[str, str]]:
    """(absolute file, base) pairs that can affect ``rel_path``, lowest precedence first."""
    pairs = [(str(root / ".gitattributes"), "")]
    parts = rel_path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        base = "/".join(parts[:depth]) + "/"
        pairs.append((str(root / base / ".gitattributes"), base))
    pairs.append((info_attributes, ""))
    return pairs


def read_attributes(
    root: Path, rel_path: str, info_attributes: str, *, ignore_case: bool = False
) -> dict[str, AttributeValue]:
    """Watched attributes of ``rel_path``, reading every relevant file now (no cache)."""
    macros: dict[str, dict[str, str]] = {}
    files = []
    for absolute, base in attribute_files_for(root, rel_path, info_attributes):
        try:
            text = Path(absolute).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        is_info = absolute == info_attributes
        display = ".git/info/attributes" if is_info else f"{base}.gitattributes"
        files.append(
            parse_attributes(
                text,
                base,
                display,
                allow_macros=is_info or base == "",
                macros=macros,
                ignore_case=ignore_case,
            )
        )
    return lookup(files, rel_path, ignore_case=ignore_case)
