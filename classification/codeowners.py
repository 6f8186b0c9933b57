"""CODEOWNERS with GitHub's semantics, for the ``codeowners`` signal.

* The file is the first of ``.github/CODEOWNERS``, ``CODEOWNERS``, ``docs/CODEOWNERS``.
* The last matching line wins; a line with a pattern and no owners makes the file
  unowned. Matching is case-sensitive.
* Patterns follow gitignore rules with GitHub's exceptions: no ``!`` negation and no
  ``[ ]`` ranges (such lines are invalid); ``docs/*`` matches only files directly in
  ``docs``; ``apps/`` matches a directory ``apps`` at any depth and everything in it;
  ``/docs/`` only the top-level one; a pattern with a slash inside is anchored.
* A line with invalid syntax (bad pattern, bad owner) is skipped with a warning; the
  rest of the file still applies.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from onbox.classification.patterns import LazyRegex, literal_parts, wildmatch_regex

logger = logging.getLogger(__name__)

LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")

_OWNER = re.compile(
    r"^(?:@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?"
    r"|[^@\s]+@[^@\s]+\.[^@\s]+)$"
)


@dataclass
class OwnerRule:
    """One valid CODEOWNERS line."""

    pattern: str
    owners: tuple[str, ...]
    line: int
    regex: LazyRegex
    literals: tuple[str, ...]

    def matches(self, path: str) -> bool:
        """Whether this rule's pattern matches the repo-relative file ``path``."""
        if any(part not in path for part in self.literals):
            return False
        return self.regex.search(path) is not None


@dataclass
class CodeOwners:
    """A parsed CODEOWNERS file."""

    path: str  # repo-relative location, e.g. ".github/CODEOWNERS"
    rules: list[OwnerRule] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def owners_of(self, path: str) -> tuple[tuple[str, ...], int] | None:
        """(owners, line) of the last rule matching ``path``; ``None`` if none matches."""
        for rule in reversed(self.rules):
            if rule.matches(path):
                return rule.owners, rule.line
        return None


def pattern_regex(pattern: str) -> str:
    """The regex (for ``re.search``) of a CODEOWNERS pattern, as GitHub interprets it."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body = pattern.strip("/") if pattern.startswith("/") else pattern.rstrip("/")
    if pattern.endswith("/"):
        tail = "/"  # a directory: everything in it, at any depth
    elif body.endswith("/*") or (body == "*" and anchored):
        tail = r"\Z"  # "dir/*": files directly inside only
    else:
        tail = r"(?:\Z|/)"  # a file, or a directory and everything in it
    if body.startswith("**/"):
        anchored = False
        body = body[3:]
    head = r"\A" if anchored else r"(?:\A|/)"
    if body == "*" and not anchored:
        return r"\A"  # "*" owns everything
    return f"{head}{wildmatch_regex(body, brackets=False)}{tail}"


def parse_codeowners(text: str, display: str) -> CodeOwners:
    """Parse CODEOWNERS text; invalid lines are skipped and listed in ``warnings``."""
    result = CodeOwners(display)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = _split(line)
        if not tokens:
            continue
        pattern, owners = tokens[0], tokens[1:]
        problem = _problem(pattern, owners)
        if problem:
            message = f"{display}:{number}: {problem}; line skipped"
            result.warnings.append(message)
            logger.warning("%s", message)
            continue
        unescaped = pattern.replace("\\#", "#").replace("\\ ", " ")
        result.rules.append(
            OwnerRule(
                pattern=unescaped,
                owners=tuple(owners),
                line=number,
                regex=LazyRegex(unescaped, translate=pattern_regex),
                literals=literal_parts(unescaped.strip("/")),
            )
        )
    return result


def _split(line: str) -> list[str]:
    tokens: list[str] = []
    for match in re.finditer(r"(?:\\.|[^\s\\])+", line):
        token = match.group(0)
        if token.startswith("#"):
            break  # inline comment
        tokens.append(token)
    return tokens


def _problem(pattern: str, owners: list[str]) -> str | None:
    if pattern.startswith("!"):
        return f"negated pattern {pattern!r} is not supported by CODEOWNERS"
    if re.search(r"(?<!\\)[\[\]]", pattern):
        return f"character ranges in {pattern!r} are not supported by CODEOWNERS"
    if "***" in pattern:
        return f"pattern {pattern!r} has '***'"
    for owner in owners:
        if not _OWNER.match(owner):
            return f"owner {owner!r} is not @user, @org/team or an email address"
    return None
