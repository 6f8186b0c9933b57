"""Pattern compilers shared by the signals: safe regexes and git-style wildmatch globs.

* :func:`compile_safe_regex` compiles an admin-written regex with RE2 (linear time, no
  backtracking) when ``google-re2`` is installed, and otherwise with :mod:`re` after a
  conservative static check that rejects nested quantifiers, backreferences, lookaround
  and overly long patterns.
* :func:`wildmatch_regex` turns a gitignore/gitattributes/CODEOWNERS pattern into a
  Python regex with git's ``WM_PATHNAME`` semantics (``*`` and ``?`` never match ``/``,
  ``**`` spans directories only next to a slash).
* :func:`literal_parts` gives the literal runs of a glob so callers can skip compiling
  patterns that cannot match (``all(part in path ...)`` is a necessary condition).

Errors: :class:`PatternError` (a :class:`ValueError`) with a message that says what to
change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

MAX_REGEX_LENGTH = 500

try:  # pragma: no cover - depends on the environment
    import re2 as _re2

    HAVE_RE2 = True
except ImportError:  # pragma: no cover - depends on the environment
    _re2 = None
    HAVE_RE2 = False


class PatternError(ValueError):
    """A pattern that cannot be compiled safely; the message says what to change."""


class MatchLike(Protocol):
    """The subset of a match object the scanners use (``re`` and ``re2`` both provide it)."""

    def start(self, group: int | str = ...) -> int: ...
    def end(self, group: int | str = ...) -> int: ...
    def group(self, group: int | str = ...) -> Any: ...
    @property
    def lastgroup(self) -> str | None: ...


class RegexLike(Protocol):
    """A compiled regex from :mod:`re` or :mod:`re2`."""

    @property
    def pattern(self) -> str: ...
    @property
    def groupindex(self) -> Mapping[str, int]: ...
    def finditer(self, text: str) -> Iterator[Any]: ...
    def search(self, text: str) -> Any: ...


# Nested quantifiers like (a+)+, (a*)*, (a|aa)+{2,}: the classic catastrophic shapes.
_QUANTIFIED_GROUP = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")
_BACKREF_OR_LOOKAROUND = re.compile(r"\\[1-9]|\(\?(?:=|!|<=|<!|P=)|\\k<")
_ALTERNATION_STAR = re.compile(r"\((?:[^()\\]|\\.)*\|(?:[^()\\]|\\.)*\)\s*[+*{]")


def _static_check(pattern: str) -> None:
    if _BACKREF_OR_LOOKAROUND.search(pattern):
        raise PatternError(
            f"regex {pattern!r} uses a backreference or lookaround; rewrite it without them"
        )
    if _QUANTIFIED_GROUP.search(pattern) or _ALTERNATION_STAR.search(pattern):
        raise PatternError(
            f"regex {pattern!r} repeats a group that itself repeats or alternates, which can "
            "backtrack catastrophically; rewrite it without nested quantifiers"
        )


def compile_safe_regex(pattern: str, *, flags_ignorecase: bool = False) -> RegexLike:
    """Compile an admin-provided regex so that it runs in linear time.

    Raises :class:`PatternError` for a pattern that is too long, invalid, or (without
    RE2) shaped so that it could backtrack catastrophically.
    """
    if not pattern:
        raise PatternError("empty regex; give a pattern such as 'PAT-[0-9]{8}'")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise PatternError(f"regex is {len(pattern)} characters; keep it under {MAX_REGEX_LENGTH}")
    if _re2 is not None:
        options = _re2.Options()
        options.case_sensitive = not flags_ignorecase
        options.log_errors = False
        try:
            return _re2.compile(pattern, options)  # type: ignore[no-any-return]
        except Exception as exc:
            raise PatternError(
                f"regex {pattern!r} is not valid RE2 syntax ({exc}); RE2 has no "
                "backreferences or lookaround"
            ) from None
    _static_check(pattern)
    try:
        return re.compile(pattern, re.IGNORECASE if flags_ignorecase else 0)
    except re.error as exc:
        raise PatternError(f"regex {pattern!r} is invalid: {exc}") from None


def compile_fast_regex(pattern: str) -> RegexLike:
    """Compile a vetted built-in regex with RE2 when available (it scans much faster)."""
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        return _re2.compile(pattern, options)  # type: ignore[no-any-return]
    return re.compile(pattern)


# --- wildmatch -------------------------------------------------------------------------

_CHAR_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _bracket(glob: str, i: int) -> tuple[str, int]:
    """Translate ``[...]`` starting at ``glob[i] == '['``; return (regex, next index)."""
    j = i + 1
    negate = False
    if j < len(glob) and glob[j] in "!^":
        negate = True
        j += 1
    parts: list[str] = []
    first = True
    while j < len(glob):
        c = glob[j]
        if c == "]" and not first:
            body = "".join(parts)
            return (f"[^/{body}]" if negate else f"[{body}]"), j + 1
        first = False
        if c == "[" and glob.startswith("[:", j):
            end = glob.find(":]", j + 2)
            name = glob[j + 2 : end] if end != -1 else ""
            if name in _CHAR_CLASSES:
                parts.append(_CHAR_CLASSES[name])
                j = end + 2
                continue
        if c == "\\" and j + 1 < len(glob):
            parts.append(re.escape(glob[j + 1]))
            j += 2
            continue
        if c == "-" and parts and j + 1 < len(glob) and glob[j + 1] != "]":
            parts.append("-")
            j += 1
            continue
        parts.append(re.escape(c) if c not in "-" else "\\-")
        j += 1
    # No closing bracket: git treats the pattern as not matching anything sensible; match '['.
    return re.escape("["), i + 1


def wildmatch_regex(glob: str, *, brackets: bool = True) -> str:
    """Regex source (without anchors) for ``glob`` under git's WM_PATHNAME rules."""
    out: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            stars = j - i
            at_start = i == 0 or glob[i - 1] == "/"
            at_end = j == n or glob[j] == "/"
            if stars >= 2 and at_start and at_end:
                if j == n:  # trailing "**": everything (inside)
                    out.append(".*")
                    i = j
                else:  # "**/": zero or more directories
                    out.append("(?:.*/)?")
                    i = j + 1
                continue
            out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and brackets:
            piece, i = _bracket(glob, i)
            out.append(piece)
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


_GLOB_SPECIAL = re.compile(r"\[[!^]?\]?[^\]]*\]|\\.?|[*?\[]")


def literal_parts(glob: str) -> tuple[str, ...]:
    """Literal runs of ``glob`` that any matching path must contain.

    Bracket expressions and escapes end a run (their content is not literal text), and
    the slashes around a run are dropped because ``**/`` may match nothing.
    """
    stripped = (part.strip("/") for part in _GLOB_SPECIAL.split(glob))
    return tuple(part for part in stripped if part)


@dataclass
class LazyRegex:
    """A glob translated and compiled on first use.

    Cold start stays cheap: with a thousand rules, most are never tried because their
    literal parts are not in the path.
    """

    glob: str
    flags: int = 0
    translate: Callable[[str], str] | None = None
    _compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        """The compiled regex (translated with ``translate``, default :func:`wildmatch_regex`)."""
        if self._compiled is None:
            source = (self.translate or wildmatch_regex)(self.glob)
            self._compiled = re.compile(source, self.flags)
        return self._compiled

    def fullmatch(self, text: str) -> re.Match[str] | None:
        """Match the whole of ``text``."""
        return self.compiled.fullmatch(text)

    def search(self, text: str) -> re.Match[str] | None:
        """Search ``text``."""
        return self.compiled.search(text)
