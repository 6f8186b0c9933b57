"""Find the git repository of a file and identify it by its normalised remote.

Discovery walks up from the file looking for ``.git`` (a directory, or a file with
``gitdir:`` as in submodules and worktrees) and reads the config directly, which is
much faster than starting ``git``. The identity is the remote ``origin`` (or the first
remote), normalised to ``host/owner/name``: scheme, user, password and port dropped, host
lower-cased, ``.git`` and slashes stripped. ``https://github.com/Acme/Pay.git``,
``ssh://git@github.com:22/Acme/Pay`` and ``git@GitHub.com:Acme/Pay.git`` are all
``github.com/Acme/Pay``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<path>(?!//).+)$")
_SECTION = re.compile(r'^\s*\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]\s*(.*)$')
_ENTRY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*?))?\s*$")

Fingerprint = tuple[int, int, int] | None


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


def read_git_config(path: str) -> dict[str, dict[str, str]]:
    """A small reader for git's config format: ``{"remote.origin": {"url": ...}}``.

    Keys are lower-cased; the last value of a repeated key wins (as ``git config --get``).
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return sections
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        section = _SECTION.match(line)
        if section and line.startswith("["):
            name = section.group(1).lower()
            if section.group(2) is not None:
                name = f"{name}.{section.group(2)}"
            elif "." in name:  # legacy [remote.origin]
                head, _, tail = name.partition(".")
                name = f"{head}.{tail}"
            current = sections.setdefault(name, {})
            line = section.group(3).strip()
            if not line:
                continue
        if current is None:
            continue
        entry = _ENTRY.match(line)
        if entry:
            value = (entry.group(2) or "true").split(" #")[0].split(" ;")[0].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            current[entry.group(1).lower()] = value
    return sections


@dataclass(frozen=True)
class Repository:
    """A discovered working tree: where it is and what it is called."""

    root: Path
    git_dir: Path
    common_dir: Path
    identity: str | None  # normalised remote, or None without a network remote
    remote_url: str | None  # redacted
    ignore_case: bool = False

    @property
    def config_path(self) -> str:
        """The repository's config file (holds the remotes)."""
        return str(self.common_dir / "config")

    @property
    def info_attributes_path(self) -> str:
        """``$GIT_COMMON_DIR/info/attributes``."""
        return str(self.common_dir / "info" / "attributes")


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
    config = read_git_config(str(common / "config"))
    url = None
    origin = config.get("remote.origin", {}).get("url")
    if origin:
        url = origin
    else:
        for name, values in config.items():
            if name.startswith("remote.") and values.get("url"):
                url = values["url"]
                break
    ignore_case = config.get("core", {}).get("ignorecase", "false").lower() in ("true", "yes", "1")
    identity = normalise_remote(url) if url else None
    return Repository(
        root=root,
        git_dir=git_dir,
        common_dir=common,
        identity=identity,
        remote_url=redact_url(url) if url else None,
        ignore_case=ignore_case,
    )
