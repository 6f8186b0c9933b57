"""Find the git repository of a file and every identity its remotes give it.

Discovery walks up from the file looking for ``.git`` (a directory, or a file with
``gitdir:`` as in submodules and worktrees) and reads the config directly, which is
much faster than starting ``git``. The config is read as git reads it: the system,
global and repository files in that order, following ``include.path`` and
``includeIf.*.path`` (conditions are not evaluated: every included file counts, which
can only add identities), keeping every value of a repeated key.

Every ``url`` and ``pushurl`` of every remote is an identity, both as written and as
``url.<base>.insteadOf`` / ``pushInsteadOf`` rewrite it. :attr:`Repository.identity`,
for display, is what ``git remote get-url origin`` prints (the first ``url`` of
``origin``, else of the first remote). Identities are normalised to
``host/owner/name``: scheme, user, password and port dropped, host lower-cased,
``.git`` and slashes stripped. ``https://github.com/Acme/Pay.git``,
``ssh://git@github.com:22/Acme/Pay`` and ``git@GitHub.com:Acme/Pay.git`` are all
``github.com/Acme/Pay``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<path>(?!//).+)$")
_SECTION = re.compile(r'^\s*\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]\s*(.*)$')
_ENTRY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:=(.*))?$", re.DOTALL)
_VALUE_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}
MAX_INCLUDE_DEPTH = 10  # git's own limit

Fingerprint = tuple[int, int, int] | None
#: (section, key, value): section is ``"remote.origin"``, ``"url.git@host:"``, ``"core"``
ConfigEntry = tuple[str, str, str]


def fingerprint(path: str) -> Fingerprint:
    """(mtime_ns, size, inode) of ``path``, or ``None`` when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def normalise_remote(url: str) -> str | None:
    """``host/owner/name`` for a git remote URL, or ``None`` for a local path or file URL."""
    url = url.strip()
    if not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file" or not parts.hostname:
            return None
        host, path = parts.hostname.lower(), parts.path
    else:
        match = _SCP_LIKE.match(url)
        if not match or url.startswith(("/", ".")) or re.match(r"^[A-Za-z]:[\\/]", url):
            return None
        host, path = match.group("host").strip("[]").lower(), match.group("path")
    path = re.sub(r"/+", "/", path).strip("/")
    if path.endswith(".git"):
        path = path[:-4].rstrip("/")
    if not path:
        return None
    return f"{host}/{path}"


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, safe to log and to show."""
    return re.sub(r"(?<=://)[^/@]*@", "", url)


def _parse_value(raw: str) -> str:
    """A config value: quotes removed, escapes expanded, trailing comment dropped."""
    out: list[str] = []
    quoted = False
    pending_space = ""
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            out.append(pending_space + _VALUE_ESCAPES.get(raw[i + 1], raw[i + 1]))
            pending_space = ""
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c in "#;":
            break
        elif not quoted and c in " \t":
            if out:
                pending_space += c
        else:
            out.append(pending_space + c)
            pending_space = ""
        i += 1
    return "".join(out)


def parse_git_config(text: str) -> list[ConfigEntry]:
    """Every ``(section, key, value)`` in one config file's text, in order.

    Section and key names are lower-cased; a subsection keeps its case
    (``remote.Origin`` differs from ``remote.origin``, as in git).
    """
    entries: list[ConfigEntry] = []
    current: str | None = None
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        while line.endswith("\\") and not line.endswith("\\\\") and index < len(lines):
            line = line[:-1] + lines[index].strip()  # a continued value
            index += 1
        if not line or line[0] in "#;":
            continue
        section = _SECTION.match(line) if line.startswith("[") else None
        if section:
            name = section.group(1).lower()
            if section.group(2) is not None:
                sub = re.sub(r"\\(.)", r"\1", section.group(2))
                name = f"{name}.{sub}"
            elif "." in name:  # legacy [remote.origin]
                head, _, tail = name.partition(".")
                name = f"{head}.{tail}"
            current = name
            line = section.group(3).strip()
            if not line:
                continue
        if current is None:
            continue
        entry = _ENTRY.match(line)
        if entry:
            value = "true" if entry.group(2) is None else _parse_value(entry.group(2).strip())
            entries.append((current, entry.group(1).lower(), value))
    return entries


def read_git_config(path: str) -> dict[str, dict[str, str]]:
    """One config file as ``{"remote.origin": {"url": ...}}``; the last value of a key wins.

    Includes are not followed; use :func:`read_config_files` for git's full reading.
    """
    sections: dict[str, dict[str, str]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return sections
    for section, key, value in parse_git_config(text):
        sections.setdefault(section, {})[key] = value
    return sections


def config_file_chain() -> list[str]:
    """The system and global config files git reads before a repository's own."""
    files = []
    if not os.environ.get("GIT_CONFIG_NOSYSTEM"):
        files.append(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")
    if os.environ.get("GIT_CONFIG_GLOBAL"):
        files.append(os.environ["GIT_CONFIG_GLOBAL"])
    else:
        home = os.path.expanduser("~")
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files.extend((os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")))
    return files


def read_config_files(paths: list[str]) -> tuple[list[ConfigEntry], list[str]]:
    """Entries of ``paths`` in order, includes followed; and every file consulted.

    The consulted list holds missing files too: creating one changes the answer.
    """
    entries: list[ConfigEntry] = []
    consulted: list[str] = []

    def read(path: str, depth: int) -> None:
        consulted.append(path)
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for section, key, value in parse_git_config(text):
            entries.append((section, key, value))
            is_include = section == "include" or section.startswith("includeif.")
            if is_include and key == "path" and value:
                if depth >= MAX_INCLUDE_DEPTH:
                    logger.warning("%s: includes nested deeper than %d", path, depth)
                    continue
                target = os.path.expanduser(value)
                if not os.path.isabs(target):
                    target = os.path.join(os.path.dirname(path), target)
                read(os.path.normpath(target), depth + 1)

    for path in paths:
        read(path, 0)
    return entries, consulted


def _rewrites(entries: list[ConfigEntry], key: str) -> list[tuple[str, str]]:
    """(prefix, base) pairs of ``url.<base>.<key>``, longest prefix first."""
    pairs = [(v, s[len("url.") :]) for s, k, v in entries if s.startswith("url.") and k == key]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def _rewrite(url: str, rules: list[tuple[str, str]]) -> str:
    for prefix, base in rules:
        if prefix and url.startswith(prefix):
            return base + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class RemoteURL:
    """One URL git may fetch from or push to, and the identity it gives."""

    remote: str
    key: str  # "url" or "pushurl", with " (insteadOf)" when rewritten
    url: str  # redacted
    identity: str | None  # normalised, or None for a local path


@dataclass(frozen=True)
class Repository:
    """A discovered working tree: where it is and what it is called."""

    root: Path
    git_dir: Path
    common_dir: Path
    identity: str | None  # normalised ``git remote get-url origin``, for display
    remote_url: str | None  # redacted
    ignore_case: bool = False
    remotes: tuple[RemoteURL, ...] = ()  # every URL of every remote, as written and rewritten
    config_files: tuple[str, ...] = field(default=())  # every config file consulted
    excludes_file: str | None = None  # core.excludesFile as configured

    @property
    def config_path(self) -> str:
        """The repository's config file (holds the remotes)."""
        return str(self.common_dir / "config")

    @property
    def info_attributes_path(self) -> str:
        """``$GIT_COMMON_DIR/info/attributes``."""
        return str(self.common_dir / "info" / "attributes")

    @property
    def identities(self) -> tuple[str | None, ...]:
        """Every distinct identity of every remote URL (``None``: a local-path remote)."""
        return tuple(dict.fromkeys(r.identity for r in self.remotes))


def find_git_entry(path: Path) -> tuple[Path, Path] | None:
    """(working tree root, git dir) of the repository containing ``path``, if any."""
    current = path if path.is_dir() else path.parent
    for directory in (current, *current.parents):
        dot_git = directory / ".git"
        try:
            st = os.stat(dot_git)
        except OSError:
            continue
        if os.path.isdir(dot_git):
            return directory, dot_git
        if st.st_size < 4096:
            try:
                content = dot_git.read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if content.startswith("gitdir:"):
                target = Path(content[len("gitdir:") :].strip())
                git_dir = target if target.is_absolute() else (directory / target)
                return directory, Path(os.path.normpath(git_dir))
    return None


def remote_urls(entries: list[ConfigEntry]) -> tuple[list[RemoteURL], str | None]:
    """Every remote URL (written and rewritten), and the ``get-url origin`` URL."""
    fetch_rules = _rewrites(entries, "insteadof")
    push_rules = _rewrites(entries, "pushinsteadof")
    found: list[RemoteURL] = []
    first: dict[str, str] = {}
    for section, key, value in entries:
        if not section.startswith("remote.") or key not in ("url", "pushurl") or not value:
            continue
        remote = section[len("remote.") :]
        fetched = _rewrite(value, fetch_rules)
        if key == "url":
            first.setdefault(remote, fetched)
        variants = {value: key}
        variants.setdefault(fetched, f"{key} (insteadOf)")
        variants.setdefault(_rewrite(value, push_rules), f"{key} (pushInsteadOf)")
        for url, how in variants.items():
            found.append(RemoteURL(remote, how, redact_url(url), normalise_remote(url)))
    display = first.get("origin") or next(iter(first.values()), None)
    return found, display


def discover(path: Path) -> Repository | None:
    """The repository that holds ``path`` (absolute), or ``None`` outside any repository."""
    found = find_git_entry(path)
    if found is None:
        return None
    root, git_dir = found
    common = git_dir
    commondir_file = git_dir / "commondir"
    if commondir_file.exists():  # linked worktree
        try:
            rel = commondir_file.read_text(encoding="utf-8").strip()
            common = Path(os.path.normpath(git_dir / rel))
        except OSError:
            pass
    chain = [*config_file_chain(), str(common / "config")]
    if git_dir != common:
        chain.append(str(git_dir / "config.worktree"))
    entries, consulted = read_config_files(chain)
    remotes, url = remote_urls(entries)
    ignore_case = False
    excludes: str | None = None
    for section, key, value in entries:
        if section == "core" and key == "ignorecase":
            ignore_case = value.lower() in ("true", "yes", "on", "1")
        elif section == "core" and key == "excludesfile":
            excludes = value or None
    return Repository(
        root=root,
        git_dir=git_dir,
        common_dir=common,
        identity=normalise_remote(url) if url else None,
        remote_url=redact_url(url) if url else None,
        ignore_case=ignore_case,
        remotes=tuple(remotes),
        config_files=tuple(dict.fromkeys(consulted)),
        excludes_file=excludes,
    )
