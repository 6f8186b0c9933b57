r"""CODEOWNERS with GitHub's and GitLab's semantics, for the ``codeowners`` signal.

Where the file is (:func:`files_to_read`): GitHub uses the first of
``.github/CODEOWNERS``, ``CODEOWNERS``, ``docs/CODEOWNERS``; GitLab the first of
``CODEOWNERS``, ``docs/CODEOWNERS``, ``.gitlab/CODEOWNERS``. Onbox does not know which
forge hosts a checkout, so it reads both platforms' choice (often the same file): owners
only ever raise a label.

Which syntax (:func:`dialect_for`): a file under ``.gitlab/``, or one with GitLab
section headers, is read as GitLab's; anything else as GitHub's.

GitHub:

* The last matching line wins; a line with a pattern and no owners makes the file
  unowned. Matching is case-sensitive.
* Patterns follow gitignore rules with GitHub's exceptions: no ``!`` negation and no
  ``[ ]`` ranges (such lines are invalid); ``docs/*`` matches only files directly in
  ``docs``; ``apps/`` matches a directory ``apps`` at any depth and everything in it;
  ``/docs/`` only the top-level one; a pattern with a slash inside is anchored.
* ``\#file`` does not escape the ``#`` (GitHub documents that this does not work): the
  line is a comment.
* A line with invalid syntax (bad pattern, bad owner) is skipped with a warning; the
  rest of the file still applies.

GitLab:

* ``[Section]``, optional ``^[Section]``, ``[Section][2]`` (approvals) headers, with
  default owners after the header (``[Docs] @docs-team``) for entries that name none.
  Section names are case-insensitive and sections with the same name are combined.
  Each section is matched on its own (the last matching entry in it wins) and the
  owners of every section apply; entries before the first header form their own section.
* A pattern not starting with ``/`` matches at any depth (``docs/*`` is
  ``/**/docs/*``); a trailing ``/`` means everything below; ``**`` only spans
  directories as ``**/``; ``\#`` and ``\ `` escape. A pattern without wildcards that
  names a directory also owns everything below it (GitLab's own example relies on ``docs @docs``).
* Owners are ``@user``, ``@group/sub/group``, ``@@role`` and emails; other words on the
  line are ignored (GitLab has no inline comments).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from onbox.classification import wildmatch
from onbox.classification.patterns import LazyRegex, literal_parts, wildmatch_regex

logger = logging.getLogger(__name__)

GITHUB_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
GITLAB_LOCATIONS = ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
LOCATIONS = (*GITHUB_LOCATIONS, ".gitlab/CODEOWNERS")
GITHUB, GITLAB = "github", "gitlab"

_OWNER = re.compile(
    r"^(?:@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?"
    r"|[^@\s]+@[^@\s]+\.[^@\s]+)$"
)
_GITLAB_OWNER = re.compile(
    r"^(?:@@?[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*"
    r"|[^@\s]+@[^@\s]+\.[^@\s]+)$"
)
_SECTION = re.compile(r"^(\^)?\[([^\]]+)\](?:\[(\d+)\])?(?:\s+(.*))?$")


@dataclass
class OwnerRule:
    """One valid CODEOWNERS line."""

    pattern: str
    owners: tuple[str, ...]
    line: int
    regex: LazyRegex
    literals: tuple[str, ...]
    section: str = ""  # GitLab section name, lower-cased ("" before any header)
    dialect: str = GITHUB

    def matches(self, path: str) -> bool:
        """Whether this rule's pattern matches the repo-relative file ``path``."""
        return self.matches_subject(subject_of(path, self.dialect))

    def matches_subject(self, subject: str) -> bool:
        """:meth:`matches` on a path already passed through :func:`subject_of`."""
        if any(part not in subject for part in self.literals):
            return False
        if self.dialect == GITLAB:
            return self.regex.fullmatch(subject) is not None
        return self.regex.search(subject) is not None


def subject_of(path: str, dialect: str) -> str:
    """What a rule of ``dialect`` matches: the path, or GitLab's ``"/" + path`` as bytes text."""
    return "/" + wildmatch.to_bytes_text(path) if dialect == GITLAB else path


@dataclass(frozen=True)
class Section:
    """A GitLab section header."""

    name: str  # as first written
    optional: bool
    default_owners: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class OwnerMatch:
    """The owners one section (or the whole GitHub file) gives a path."""

    owners: tuple[str, ...]
    line: int
    section: str = ""  # the section's name as written, "" for none
    optional: bool = False


@dataclass
class CodeOwners:
    """A parsed CODEOWNERS file."""

    path: str  # repo-relative location, e.g. ".github/CODEOWNERS"
    rules: list[OwnerRule] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dialect: str = GITHUB
    sections: dict[str, Section] = field(default_factory=dict)  # by lower-cased name

    def matches(self, path: str) -> list[OwnerMatch]:
        """The last matching rule of each section, in file order of the sections."""
        found: dict[str, OwnerMatch] = {}
        subject = subject_of(path, self.dialect)
        for rule in reversed(self.rules):
            if rule.section in found or not rule.matches_subject(subject):
                continue
            section = self.sections.get(rule.section)
            found[rule.section] = OwnerMatch(
                rule.owners,
                rule.line,
                section.name if section else "",
                section.optional if section else False,
            )
        return sorted(found.values(), key=lambda match: match.line)

    def owners_of(self, path: str) -> tuple[tuple[str, ...], int] | None:
        """(owners, line) for ``path``: every section's owners, the first line; or ``None``."""
        hits = self.matches(path)
        if not hits:
            return None
        owners = tuple(dict.fromkeys(owner for hit in hits for owner in hit.owners))
        return owners, hits[0].line


def dialect_for(text: str, display: str) -> str:
    """GitLab for a file under ``.gitlab/`` or with section headers; GitHub otherwise."""
    if display.startswith(".gitlab/"):
        return GITLAB
    if display.startswith(".github/"):
        return GITHUB
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("[", "^[")) and _SECTION.match(line):
            return GITLAB
    return GITHUB


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


def gitlab_glob(pattern: str) -> str:
    """GitLab's normalised pattern, matched with ``File.fnmatch`` against ``"/" + path``."""
    if pattern == "*":
        return "/**/*"
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern
    if pattern.endswith("/"):
        pattern += "**/*"
    # Ruby's fnmatch spans directories only with "**/"; any other "**" is a "*".
    return re.sub(r"\*\*+(?!/)", "*", pattern)


def parse_codeowners(text: str, display: str, dialect: str | None = None) -> CodeOwners:
    """Parse CODEOWNERS text; invalid lines are skipped and listed in ``warnings``.

    ``dialect`` is :data:`GITHUB` or :data:`GITLAB`; by default :func:`dialect_for`.
    """
    dialect = dialect or dialect_for(text, display)
    if dialect == GITLAB:
        return _parse_gitlab(text, display)
    result = CodeOwners(display)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("\\#"):
            message = (
                f"{display}:{number}: GitHub does not honour an escaped '#' at the start of "
                "a pattern, so this line is a comment; line skipped"
            )
            result.warnings.append(message)
            logger.warning("%s", message)
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
        unescaped = pattern.replace("\\ ", " ")
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


def _parse_gitlab(text: str, display: str) -> CodeOwners:
    result = CodeOwners(display, dialect=GITLAB)
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION.match(line) if line.startswith(("[", "^[")) else None
        if header is not None:
            name = header.group(2).strip()
            section = name.lower()
            defaults = tuple(t for t in (header.group(4) or "").split() if _GITLAB_OWNER.match(t))
            previous = result.sections.get(section)
            result.sections[section] = Section(
                previous.name if previous else name,
                bool(header.group(1)) if previous is None else previous.optional,
                defaults or (previous.default_owners if previous else ()),
                number,
            )
            continue
        if line.startswith(("[", "^[")):
            message = f"{display}:{number}: unparsable section header; line skipped"
            result.warnings.append(message)
            logger.warning("%s", message)
            continue
        tokens = [m.group(0) for m in re.finditer(r"(?:\\\s|\S)+", line)]
        pattern = tokens[0]
        if pattern.startswith("!"):
            message = f"{display}:{number}: negated pattern {pattern!r} is not supported"
            result.warnings.append(message)
            logger.warning("%s", message)
            continue
        owners = tuple(t for t in tokens[1:] if _GITLAB_OWNER.match(t))
        if not owners and section in result.sections:
            owners = result.sections[section].default_owners
        pattern = re.sub(r"\A\\#", "#", pattern)
        pattern = re.sub(r"\\(\s)", r"\1", pattern)
        glob = wildmatch.translate(
            wildmatch.to_bytes_text(gitlab_glob(pattern)), pathname=True, fold=False
        )
        if glob is None:
            message = f"{display}:{number}: pattern {pattern!r} can never match; line skipped"
            result.warnings.append(message)
            logger.warning("%s", message)
            continue
        result.rules.append(
            OwnerRule(
                pattern=pattern,
                owners=owners,
                line=number,
                # A literal path also owns what is below it when it names a directory, as in
                # GitLab's own example ("[Documentation]" / "docs @docs").
                regex=LazyRegex(
                    glob.source if re.search(r"[*?\[]", pattern) else f"{glob.source}(?:/.*)?",
                    re.DOTALL,
                    translate=_identity,
                ),
                literals=glob.literals,
                section=section,
                dialect=GITLAB,
            )
        )
    return result


def _identity(source: str) -> str:
    return source


def files_to_read(exists: Callable[[str], bool]) -> list[str]:
    """The CODEOWNERS files GitHub and GitLab would each use (one or two locations)."""
    chosen: list[str] = []
    for order in (GITHUB_LOCATIONS, GITLAB_LOCATIONS):
        for location in order:
            if exists(location):
                if location not in chosen:
                    chosen.append(location)
                break
    return chosen
