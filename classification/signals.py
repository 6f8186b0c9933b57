"""Compute one file's reasons from every signal; no caching of decisions here.

:class:`SignalReader` reads the repo-local files (attributes, CODEOWNERS, ``.onbox.toml``,
the git config) through a cache keyed by each file's (mtime, size, inode), and records
every file it consulted so that the classifier can tell when a decision is stale.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from onbox.classification import codeowners, gitattributes, gitignore, languages, wildmatch
from onbox.classification.content import scan_content
from onbox.classification.decision import Decision, Finding, Reason, Suppressed
from onbox.classification.history import History, RootCommitCache
from onbox.classification.labels import Label, UnknownLabelError
from onbox.classification.markers import RepoFileError, find_marker, parse_repo_file
from onbox.classification.policy_model import AllowRule, Policy
from onbox.classification.repo import Fingerprint, Repository, discover, fingerprint

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_TRACKED_ANSWERS = 16384
Watch = tuple[tuple[str, Fingerprint], ...]


@dataclass
class Evaluation:
    """A decision plus the files (and their fingerprints) it depended on."""

    decision: Decision
    watched: Watch
    base: Label = field(default_factory=lambda: Label(0, ""))
    structural: Label | None = None  # highest of base, tags, attributes, owners


class SignalReader:
    """Reads and caches parsed repo files; thread-safe.

    ``batch`` (a report or a policy diff over one pass of a tree) also caches repository
    discovery per directory, checked against the config files' fingerprints: a
    long-lived classifier does not, so a ``git init`` in a subdirectory is seen at once.
    """

    def __init__(self, *, batch: bool = False, repeat: bool = False) -> None:
        self._lock = threading.Lock()
        # ``repeat``: each file is evaluated more than once (a policy diff): the lookups
        # that do not depend on the policy are kept, keyed by path and parsed objects.
        self._lookups: dict[tuple[str, str], tuple[tuple[object, ...], Any]] | None = (
            {} if repeat else None
        )
        self._files: dict[tuple[str, str], tuple[Fingerprint, Any]] = {}
        self._tracked: dict[tuple[str, str], tuple[Fingerprint, bool]] = {}
        self._repos: dict[str, tuple[Repository | None, Watch]] | None = {} if batch else None
        self.roots = RootCommitCache()

    def lookup(
        self, kind: str, rel: str, parsed: tuple[object, ...], compute: Callable[[], T]
    ) -> T:
        """``compute()``, reused while ``parsed`` are the very objects it was computed from."""
        if self._lookups is None:
            return compute()
        key = (kind, rel)
        with self._lock:
            hit = self._lookups.get(key)
        if (
            hit is not None
            and len(hit[0]) == len(parsed)
            and all(a is b for a, b in zip(hit[0], parsed, strict=True))
        ):
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._lookups[key] = (parsed, value)
        return value

    def repository(self, path: Path) -> Repository | None:
        """:func:`discover`, cached per directory in ``batch`` mode."""
        if self._repos is None:
            return discover(path)
        key = str(path.parent)
        with self._lock:
            hit = self._repos.get(key)
        if hit is not None and all(fingerprint(p) == fp for p, fp in hit[1]):
            return hit[0]
        repo = discover(path)
        watched: Watch = ()
        if repo is not None:
            watched = tuple((p, fingerprint(p)) for p in repo.config_files)
        with self._lock:
            self._repos[key] = (repo, watched)
        return repo

    def clear(self) -> None:
        """Forget every parsed file."""
        with self._lock:
            self._files.clear()
            self._tracked.clear()
        self.roots.clear()

    def tracked(self, repo: Repository, rel: str, seen: list[tuple[str, Fingerprint]]) -> bool:
        """Whether git tracks ``rel``; asked of git once per index change."""
        index = str(repo.git_dir / "index")
        fp = fingerprint(index)
        seen.append((index, fp))
        key = (index, rel)
        with self._lock:
            cached = self._tracked.get(key)
        if cached is not None and cached[0] == fp and fp is not None:
            return cached[1]
        answer = fp is not None and gitignore.is_tracked(repo.root, rel)
        with self._lock:
            if len(self._tracked) >= MAX_TRACKED_ANSWERS:
                self._tracked.clear()
            self._tracked[key] = (fp, answer)
        return answer

    def load(
        self,
        path: str,
        kind: str,
        parse: Callable[[str], T],
        seen: list[tuple[str, Fingerprint]],
        *,
        exact: bool = False,
    ) -> T | None:
        """Parsed content of ``path`` (``None`` if missing), re-read when its stat changes.

        ``exact`` keeps every byte (surrogateescape, no newline translation) for parsers
        that must read a file exactly as git does.
        """
        fp = fingerprint(path)
        seen.append((path, fp))
        if fp is None:
            return None
        key = (path, kind)
        with self._lock:
            cached = self._files.get(key)
        if cached is not None and cached[0] == fp:
            return cached[1]  # type: ignore[no-any-return]
        errors, newline = ("surrogateescape", "") if exact else ("replace", None)
        with open(path, encoding="utf-8", errors=errors, newline=newline) as handle:
            value = parse(handle.read())
        with self._lock:
            self._files[key] = (fp, value)
        return value


def _label_or_highest(policy: Policy, name: str) -> tuple[Label, str]:
    try:
        return policy.scale.parse(name), ""
    except UnknownLabelError:
        return policy.scale.highest, f" (unknown label {name!r}: treated as the highest)"


def evaluate(
    policy: Policy, reader: SignalReader, path: Path, text: str, language: str | None = None
) -> Evaluation:
    """Every signal for the file at absolute ``path`` with content ``text``.

    ``language`` (an LSP ``languageId``) picks the grammar; the extension decides otherwise.
    """
    seen: list[tuple[str, Fingerprint]] = []
    reasons: list[Reason] = []
    repo = reader.repository(path)
    rel = None
    if repo is not None:
        seen.extend((p, fingerprint(p)) for p in repo.config_files)
        seen.append((str(repo.root / ".git"), fingerprint(str(repo.root / ".git"))))
        rel = Path(os.path.relpath(path, repo.root)).as_posix()
    base, tag_sources = _policy_repo(policy, repo, reasons, reader, seen)
    if repo is not None and rel is not None:
        _repo_file(policy, reader, repo, reasons, tag_sources, seen)
        with _unreadable_fails_closed(policy, repo, reasons):
            _attributes(policy, reader, repo, rel, reasons, tag_sources, seen)
        _tags(policy, tag_sources, reasons)
        with _unreadable_fails_closed(policy, repo, reasons):
            _owners(policy, reader, repo, rel, reasons, seen)
        ignored_label = policy.ignored_label or policy.scale.highest
        if ignored_label > max((r.label for r in reasons), default=base):
            # Only worth asking when the answer could raise the label: a warm decision
            # in a repository already at that label stats no .gitignore at all.
            with _unreadable_fails_closed(policy, repo, reasons):
                _ignored(reader, repo, rel, ignored_label, reasons, seen)
    structural = max((r.label for r in reasons), default=base)
    display = rel or str(path)
    grammar = languages.language_for(str(path), language, text)
    findings = scan_content(text, grammar, policy, key=str(path))
    findings, suppressed = _allowlisted(policy, findings, text, rel)
    reasons.extend(_content_reasons(findings, display))
    reasons.extend(_suppressed_reasons(policy, suppressed, display))
    if policy.content_config().markers:
        marker = find_marker(text)
        if marker is not None:
            label, note = _label_or_highest(policy, marker.label)
            reasons.append(
                Reason(
                    "marker",
                    label,
                    f"manual marker 'onbox: {marker.label}'{note}",
                    f"{display}:{marker.line}",
                )
            )
    final = max(r.label for r in reasons)
    deciding = tuple(
        dict.fromkeys(r.signal for r in reasons if r.label == final and r.signal != "allowlisted")
    )
    decision = Decision(
        final,
        tuple(reasons),
        policy.id,
        policy.serial,
        findings,
        repo.identity if repo else None,
        rel,
        deciding,
        suppressed,
    )
    return Evaluation(decision, tuple(seen), base, structural)


@contextmanager
def _unreadable_fails_closed(
    policy: Policy, repo: Repository, reasons: list[Reason]
) -> Iterator[None]:
    """A signal file that exists but cannot be read (say, a directory named
    ``.gitattributes``) gives the highest label with a reason, not an exception."""
    try:
        yield
    except OSError as exc:
        name = exc.filename if isinstance(exc.filename, str) else "a signal file"
        shown = os.path.relpath(name, repo.root) if os.path.isabs(name) else name
        why = exc.strerror or type(exc).__name__
        reasons.append(
            Reason(
                "fail-closed",
                policy.scale.highest,
                f"cannot read {shown} ({why}): the highest label applies until it is fixed",
                shown,
            )
        )


def _ignored(
    reader: SignalReader,
    repo: Repository,
    rel: str,
    label: Label,
    reasons: list[Reason],
    seen: list[tuple[str, Fingerprint]],
) -> None:
    """Files git ignores (``.env``, build output, a copied tree) do not inherit the repo's
    label: they get ``[policy] ignored_label``."""
    directories: list[gitignore.IgnoreFile | None] = []
    for absolute, base in gitignore.ignore_files_for(repo.root, rel):
        display = f"{base}.gitignore"
        directories.append(
            reader.load(
                absolute,
                f"gitignore:{repo.ignore_case}:{base}",
                _ignore_parser(base, display, repo.ignore_case),
                seen,
            )
        )
    exclude = str(repo.common_dir / "info" / "exclude")
    global_file = gitignore.excludes_file(repo.excludes_file)
    global_files = [
        reader.load(
            exclude,
            f"gitignore:{repo.ignore_case}",
            _ignore_parser("", ".git/info/exclude", repo.ignore_case),
            seen,
        ),
        reader.load(
            global_file,
            f"gitignore:{repo.ignore_case}",
            _ignore_parser("", global_file, repo.ignore_case),
            seen,
        ),
    ]
    source = gitignore.ignored_by(rel, directories, global_files, ignore_case=repo.ignore_case)
    if source is None or reader.tracked(repo, rel, seen):
        return
    reasons.append(
        Reason(
            "repo-ignored",
            label,
            f"git ignores this file ({source}) and does not track it: it is not part of the "
            f"repository, so it gets the policy's ignored_label {label.name!r}",
            source,
        )
    )


def _ignore_parser(
    base: str, display: str, ignore_case: bool
) -> Callable[[str], gitignore.IgnoreFile]:
    return functools.partial(
        gitignore.parse_ignore, base=base, display=display, ignore_case=ignore_case
    )


def _policy_repo(
    policy: Policy,
    repo: Repository | None,
    reasons: list[Reason],
    reader: SignalReader,
    seen: list[tuple[str, Fingerprint]],
) -> tuple[Label, list[tuple[str, str, str]]]:
    """The base label and the tags the policy's [[repos]] rules give.

    Every URL of every remote counts (git may fetch from or push to any of them): each
    identity gets its own base, and the highest wins — naming the disagreement. Where
    rules pin ``root_commits``, the history counts too: a remote that names a pinned
    repository this history is not gets the highest label, and a rule whose root
    commits this history descends from is a floor whatever the remotes say.
    """
    tags: list[tuple[str, str, str]] = []  # (tag, origin, source)
    if repo is None:
        reasons.append(
            Reason(
                "policy-default",
                policy.default_label,
                "not in a git repository: the policy's default label applies" + _why(policy),
                _default_source(policy),
            )
        )
        return policy.default_label, tags
    history = None
    if any(rule.root_commits for rule in policy.repos):
        history = reader.roots.history(repo, seen)
    floor = _history_floor(policy, history, reasons, tags)
    identities = repo.identities
    if all(identity is None for identity in identities):
        reasons.append(
            Reason(
                "policy-default",
                policy.default_label,
                f"repository {repo.root} has no network remote: the policy's default label "
                "applies" + _why(policy),
                _default_source(policy),
            )
        )
        return (policy.default_label if floor is None else max(policy.default_label, floor)), tags
    bases = {
        identity: _identity_base(policy, repo, identity, reasons, tags, history)
        for identity in identities
    }
    base = max(bases.values()) if floor is None else max(floor, *bases.values())
    if len(set(bases.values())) > 1:
        named = ", ".join(
            f"{identity or 'a local path'} is {label.name}" for identity, label in bases.items()
        )
        reasons.append(
            Reason(
                "policy-repo",
                base,
                f"the remotes of this repository disagree ({named}): the highest label applies",
                repo.config_path,
            )
        )
    return base, tags


def _history_floor(
    policy: Policy,
    history: History | None,
    reasons: list[Reason],
    tags: list[tuple[str, str, str]],
) -> Label | None:
    """The highest label of the pinned rules whose root commits this history shares."""
    if history is None or not history.roots:
        return None
    floor: Label | None = None
    roots = set(history.roots)
    for index, rule in enumerate(policy.repos):
        shared = roots.intersection(rule.root_commits)
        if not shared:
            continue
        label = rule.label or policy.default_label
        source = policy.where(f"repos.{index}.root_commits")
        tags.extend((tag, f"policy rule {rule.match!r} (by history)", source) for tag in rule.tags)
        reasons.append(
            Reason(
                "policy-repo",
                label,
                f"this history descends from root commit {min(shared)[:12]}, which policy rule "
                f"{rule.match!r} pins: {label.name} at least, whatever the remotes say",
                source,
            )
        )
        floor = label if floor is None else max(floor, label)
    return floor


def _pin_mismatch(rule_roots: tuple[str, ...], history: History | None) -> str | None:
    """Why this history is not the pinned repository, or ``None`` when it is."""
    if history is None or not history.roots:
        why = history.error if history is not None else "no history"
        return f"its root commits cannot be checked ({why})"
    extra = sorted(set(history.roots) - set(rule_roots))
    if extra:
        return f"this checkout's history has root commit {extra[0][:12]}, which it does not pin"
    return None


def _identity_base(
    policy: Policy,
    repo: Repository,
    identity: str | None,
    reasons: list[Reason],
    tags: list[tuple[str, str, str]],
    history: History | None = None,
) -> Label:
    """The base label one remote identity gets; its rules' tags are added to ``tags``."""
    urls = [r for r in repo.remotes if r.identity == identity]
    where = ", ".join(dict.fromkeys(f"{r.remote} {r.key} {r.url}" for r in urls))
    if identity is None:
        reasons.append(
            Reason(
                "policy-default",
                policy.default_label,
                f"remote URL {where} is a local path (no identity): the policy's default "
                "label applies" + _why(policy),
                _default_source(policy),
            )
        )
        return policy.default_label
    base: Label | None = None
    for index, rule in enumerate(policy.repos):
        if not fnmatch.fnmatchcase(identity.lower(), rule.match.lower()):
            continue
        source = policy.where(f"repos.{index}.tags")
        tags.extend(
            (tag, f"policy rule {rule.match!r} for {identity}", source) for tag in rule.tags
        )
        mismatch = _pin_mismatch(rule.root_commits, history) if rule.root_commits else None
        if mismatch is not None:
            reasons.append(
                Reason(
                    "policy-repo",
                    policy.scale.highest,
                    f"remote {where} names {identity}, which policy rule {rule.match!r} pins "
                    f"to its root commits, but {mismatch}: the highest label applies",
                    policy.where(f"repos.{index}.root_commits"),
                )
            )
            return policy.scale.highest
        if rule.label is not None and base is None:
            base = rule.label
            reasons.append(
                Reason(
                    "policy-repo",
                    rule.label,
                    f"policy rule {rule.match!r} labels repo {identity} ({where})",
                    policy.where(f"repos.{index}.label"),
                )
            )
    if base is None:
        base = policy.default_label
        reasons.append(
            Reason(
                "policy-default",
                base,
                f"no policy rule sets a label for repo {identity} ({where}): the "
                "policy's default label applies" + _why(policy),
                _default_source(policy),
            )
        )
    return base


def _default_source(policy: Policy) -> str | None:
    return None if policy.source.startswith("<") else policy.where("policy.default_label")


def _why(policy: Policy) -> str:
    """Say so when the fail-closed built-in policy is what is in force."""
    if policy.source.startswith("<"):
        return f" (policy {policy.id}: {policy.source.strip('<>')})"
    return ""


def _repo_file(
    policy: Policy,
    reader: SignalReader,
    repo: Repository,
    reasons: list[Reason],
    tags: list[tuple[str, str, str]],
    seen: list[tuple[str, Fingerprint]],
) -> None:
    path = str(repo.root / ".onbox.toml")
    try:
        repo_file = reader.load(path, "onbox-toml", parse_repo_file, seen)
    except (RepoFileError, OSError) as exc:
        reasons.append(
            Reason(
                "fail-closed",
                policy.scale.highest,
                f".onbox.toml cannot be used ({exc}): the highest label applies until it is fixed",
                ".onbox.toml:1",
            )
        )
        return
    if repo_file is None:
        return
    tags.extend((t, ".onbox.toml", f".onbox.toml:{repo_file.tags_line}") for t in repo_file.tags)
    if repo_file.label:
        label, note = _label_or_highest(policy, repo_file.label)
        reasons.append(
            Reason(
                "repo-tag",
                label,
                f".onbox.toml sets label {repo_file.label!r}{note}",
                f".onbox.toml:{repo_file.label_line}",
            )
        )


def _attributes(
    policy: Policy,
    reader: SignalReader,
    repo: Repository,
    rel: str,
    reasons: list[Reason],
    tags: list[tuple[str, str, str]],
    seen: list[tuple[str, Fingerprint]],
) -> None:
    files: list[gitattributes.AttributesFile] = []
    info = repo.info_attributes_path
    for absolute, base in gitattributes.attribute_files_for(repo.root, rel, info):
        is_info = absolute == info
        if not is_info and os.path.islink(absolute):
            seen.append((absolute, fingerprint(absolute)))
            continue  # git does not follow an in-tree .gitattributes symlink
        parse = functools.partial(
            gitattributes.parse_attributes,
            base=base,
            display=".git/info/attributes" if is_info else f"{base}.gitattributes",
            allow_macros=is_info or base == "",
            ignore_case=repo.ignore_case,
        )
        # Macros are resolved at lookup time across files, so a parse stands alone.
        parsed = reader.load(absolute, f"attributes:{repo.ignore_case}", parse, seen, exact=True)
        if parsed is not None:
            files.append(parsed)
    found = reader.lookup(
        "attributes",
        rel,
        tuple(files),
        lambda: gitattributes.lookup(files, rel, ignore_case=repo.ignore_case),
    )
    if "onbox-label" in found:
        value = found["onbox-label"]
        name = "" if value.value == gitattributes.SET else value.value
        label, note = _label_or_highest(policy, name)
        via = f" via {value.via}" if value.via else ""
        reasons.append(
            Reason("path-attribute", label, f"onbox-label={name}{via}{note}", value.source)
        )
    if "onbox-tags" in found and found["onbox-tags"].value != gitattributes.SET:
        value = found["onbox-tags"]
        for tag in filter(None, value.value.split(",")):
            tags.append((tag.strip(), "onbox-tags in .gitattributes", value.source))


UNKNOWN_TAG = "is not in the policy's [tags]"


def _tags(policy: Policy, tags: list[tuple[str, str, str]], reasons: list[Reason]) -> None:
    """Tags are compared case-insensitively; an unknown tag is said, not silently dropped."""
    known = {name.lower(): (name, label) for name, label in policy.tags.items()}
    for tag, origin, source in tags:
        signal = "path-attribute" if origin.startswith("onbox-tags") else "repo-tag"
        entry = known.get(tag.lower())
        if entry is None:
            logger.debug("tag %r from %s has no label in policy %s", tag, origin, policy.id)
            reasons.append(
                Reason(
                    signal,
                    policy.scale.lowest,
                    f"tag {tag!r} (from {origin}) {UNKNOWN_TAG}: it does not change the label"
                    " (a typo? ask your admin to map it)",
                    source,
                )
            )
            continue
        name, label = entry
        reasons.append(
            Reason(
                signal,
                label,
                f"tag {tag!r} (from {origin}) is {label.name} per {policy.where('tags.' + name)}",
                source,
            )
        )


def _owners(
    policy: Policy,
    reader: SignalReader,
    repo: Repository,
    rel: str,
    reasons: list[Reason],
    seen: list[tuple[str, Fingerprint]],
) -> None:
    parsed_files: dict[str, codeowners.CodeOwners] = {}
    top = str(repo.root)

    def exists(location: str) -> bool:
        parsed = reader.load(
            os.path.join(top, location),
            "codeowners",
            functools.partial(_parse_owners, display=location),
            seen,
        )
        if parsed is not None:
            parsed_files[location] = parsed
        return parsed is not None

    # GitHub's and GitLab's choice of file (often the same one): owners only raise.
    lowered = {k.lower(): (k, v) for k, v in policy.owners.items()}
    for location in codeowners.files_to_read(exists):
        parsed = parsed_files[location]
        hits = reader.lookup(location, rel, (parsed,), functools.partial(parsed.matches, rel))
        for hit in hits:
            section = ""
            if hit.section:
                optional = "optional " if hit.optional else ""
                section = f" in {optional}section [{hit.section}]"
            for owner in hit.owners:
                entry = lowered.get(owner.lower())
                if entry is not None:
                    reasons.append(
                        Reason(
                            "codeowners",
                            entry[1],
                            f"owned by {owner}{section}, which is {entry[1].name} per "
                            f"{policy.where('owners.' + entry[0])}",
                            f"{location}:{hit.line}",
                        )
                    )


def _parse_owners(text: str, display: str) -> codeowners.CodeOwners:
    return codeowners.parse_codeowners(text, display)


def _allowlisted(
    policy: Policy, findings: tuple[Finding, ...], text: str, rel: str | None
) -> tuple[tuple[Finding, ...], tuple[Suppressed, ...]]:
    """Split ``findings`` into those that count and those an allowlist entry accepts."""
    if not policy.allowlist or not findings:
        return findings, ()
    now = datetime.now(UTC)
    entries = [entry for entry in policy.allowlist if entry.applies(now)]
    kept: list[Finding] = []
    suppressed: list[Suppressed] = []
    for finding in findings:
        entry = next((e for e in entries if _allows(e, finding, text, rel)), None)
        if entry is None:
            kept.append(finding)
            continue
        where = f"{policy.source}:{entry.line}" if entry.line else policy.source
        suppressed.append(
            Suppressed(finding, entry.reason, where, entry.expires.date().isoformat())
        )
    return tuple(kept), tuple(suppressed)


def _allows(entry: AllowRule, finding: Finding, text: str, rel: str | None) -> bool:
    if entry.detector is not None:
        name = entry.detector
        names = {finding.type, finding.kind, finding.detector}
        if finding.detector.startswith("builtin:"):
            names.add(finding.detector[len("builtin:") :])
        if name not in names:
            return False
    if entry.path is not None:
        if rel is None:
            return False  # outside a repository a path means nothing
        glob = _allow_glob(entry.path)
        if glob is None or glob.fullmatch(wildmatch.to_bytes_text(rel)) is None:
            return False
    if entry.sha256 is not None:
        digest = hashlib.sha256(text[finding.start : finding.end].encode("utf-8", "replace"))
        if digest.hexdigest() != entry.sha256:
            return False
    return True


@functools.lru_cache(maxsize=256)
def _allow_glob(pattern: str) -> re.Pattern[str] | None:
    """A ``path`` glob of ``[[allowlist]]``: git's rules, anchored at the repository root."""
    glob = wildmatch.translate(
        wildmatch.to_bytes_text(pattern.lstrip("/")), pathname=True, fold=False
    )
    return None if glob is None else re.compile(glob.source, re.DOTALL)


def _suppressed_reasons(
    policy: Policy, suppressed: tuple[Suppressed, ...], display: str
) -> list[Reason]:
    """Suppressed findings are said, never silently dropped; they never raise a label."""
    return [
        Reason(
            "allowlisted",
            policy.scale.lowest,
            f"suppressed {item.finding.kind}: {item.finding.type} — allowlisted by the policy "
            f"({item.source}: {item.reason}; until {item.expires})",
            f"{display}:{item.finding.line}",
        )
        for item in suppressed
    ]


def _content_reasons(findings: tuple[Finding, ...], display: str) -> list[Reason]:
    grouped: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        grouped.setdefault((finding.kind, finding.type), []).append(finding)
    reasons = []
    for (kind, ftype), items in grouped.items():
        label = max(f.label for f in items)
        count = f"{len(items)} × " if len(items) > 1 else ""
        reasons.append(
            Reason("content", label, f"{kind}: {count}{ftype}", f"{display}:{items[0].line}")
        )
    return reasons
