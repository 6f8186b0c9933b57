"""Where signed policy bundles come from: a dropped file, a git repository, an HTTPS URL.

The transport is not trusted; the bundle's signatures are (see
:mod:`onbox.classification.policy_store`). Each source returns the newest bundle's
bytes and an origin string for the journal, or raises :class:`SourceError`.

Source specs (``[policy] sources`` in the local settings, or ``onbox policy pull
--source``)::

    /srv/onbox/policy                    directory: newest *.onbox-policy / *.json file
    dir:/srv/onbox/policy                the same, explicitly
    git+https://git.corp/acme/policy.git#main:policy.onbox-policy
    git+/path/to/repo                    git (branch defaults to the remote HEAD, path
                                         to policy.onbox-policy)
    https://policy.corp.example/acme.onbox-policy
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import ssl
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import git
import httpx
from filelock import FileLock

from onbox import paths
from onbox.classification.bundle import BUNDLE_SUFFIXES, MAX_BUNDLE_BYTES
from onbox.classification.policy_store import ApplyResult, PolicyStore
from onbox.classification.trust import SourceError

logger = logging.getLogger(__name__)

DEFAULT_GIT_PATH = "policy.onbox-policy"


@dataclass(frozen=True)
class Fetched:
    """Bundle bytes from a source (at most ``max_bytes + 1``) and where they came from."""

    data: bytes
    origin: str


class PolicySource(Protocol):
    """A place bundles are published."""

    @property
    def name(self) -> str:
        """Short description for logs and results."""

    def fetch(self) -> Fetched | None:
        """The newest bundle, ``None`` if the source holds none; raises :class:`SourceError`."""


class DirectorySource:
    """A directory that device management drops bundle files into."""

    def __init__(self, path: Path, max_bytes: int = MAX_BUNDLE_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    @property
    def name(self) -> str:
        """``dir:<path>``."""
        return f"dir:{self.path}"

    def _candidates(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.path) as entries:
                return [
                    e
                    for e in entries
                    if not e.name.startswith(".")
                    and e.name.endswith(BUNDLE_SUFFIXES)
                    and e.is_file()
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SourceError(f"cannot list policy directory {self.path}: {exc}") from None

    def watch_key(self) -> object:
        """A cheap fingerprint of the bundle files; changes when one is added or replaced."""
        try:
            return sorted(
                (e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in self._candidates()
            )
        except (OSError, SourceError):
            return None

    def newest(self) -> Path | None:
        """The most recently modified bundle file, or ``None``."""
        stamped: list[tuple[int, str, str]] = []
        for entry in self._candidates():
            try:  # a file may vanish between listing and stat
                stamped.append((entry.stat().st_mtime_ns, entry.name, entry.path))
            except OSError:
                continue
        return Path(max(stamped)[2]) if stamped else None

    def fetch(self) -> Fetched | None:
        """Read the newest bundle file (up to the size cap plus one byte)."""
        path = self.newest()
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                return Fetched(handle.read(self.max_bytes + 1), f"file {path}")
        except OSError as exc:
            raise SourceError(f"cannot read policy bundle {path}: {exc}") from None


class GitSource:
    """A git repository holding the bundle; cloned and fetched into the cache.

    A rewritten (force-pushed) history is fine: each fetch force-updates the remote
    refs and hard-resets the clone to the remote branch.
    """

    def __init__(
        self,
        url: str,
        branch: str | None = None,
        path: str = DEFAULT_GIT_PATH,
        *,
        cache_root: Path | None = None,
        max_bytes: int = MAX_BUNDLE_BYTES,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.branch = branch
        self.path = path
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        root = cache_root or paths.cache_dir() / "policy-git"
        self.clone_dir = root / hashlib.sha256(url.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """``git:<url>#<branch>:<path>``."""
        return f"git:{self.url}#{self.branch or 'HEAD'}:{self.path}"

    def _env(self) -> dict[str, str]:
        return {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}

    def _sync(self) -> git.Repo:
        if (self.clone_dir / ".git").is_dir():
            try:
                repo = git.Repo(self.clone_dir)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
                logger.warning(
                    "policy clone %s is broken (%s); cloning afresh", self.clone_dir, exc
                )
                shutil.rmtree(self.clone_dir, ignore_errors=True)
            else:
                repo.git.update_environment(**self._env())
                try:
                    self._fetch(repo)
                    return repo
                except git.GitCommandError:
                    # Unreachable remote: keep the clone and report. Reachable remote but a
                    # failing fetch: the clone itself is damaged, so start over.
                    repo.git.ls_remote("--heads", self.url, kill_after_timeout=self.timeout_s)
                    logger.warning("policy clone %s cannot fetch; cloning afresh", self.clone_dir)
                    shutil.rmtree(self.clone_dir, ignore_errors=True)
        self.clone_dir.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.clone_from(
            self.url, self.clone_dir, env=self._env(), kill_after_timeout=self.timeout_s
        )

    def _fetch(self, repo: git.Repo) -> None:
        repo.git.remote("set-url", "origin", self.url)
        repo.git.fetch(
            "--prune",
            "--force",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            kill_after_timeout=self.timeout_s,
        )

    def _remote_branch(self, repo: git.Repo) -> str:
        if self.branch:
            return f"origin/{self.branch}"
        try:
            head: str = repo.git.rev_parse("--abbrev-ref", "origin/HEAD")
        except git.GitCommandError:
            head = f"origin/{repo.active_branch.name}"
        return head

    def fetch(self) -> Fetched | None:
        """Clone or fetch, reset to the remote branch, and read the bundle file."""
        lock = FileLock(str(self.clone_dir) + ".lock")
        try:
            with lock:
                repo = self._sync()
                ref = self._remote_branch(repo)
                repo.git.reset("--hard", ref)
                commit = repo.commit(ref)
                try:
                    blob = commit.tree / self.path
                except KeyError:
                    return None
                stream = blob.data_stream
                data: bytes = stream.read(self.max_bytes + 1)
        except (git.GitCommandError, git.GitError, OSError, ValueError) as exc:
            raise SourceError(f"cannot fetch policy from git {self.url}: {exc}") from None
        return Fetched(data, f"git {self.url} {ref}@{commit.hexsha[:12]}:{self.path}")


class HttpsSource:
    """A bundle served over HTTPS (certificates verified, size capped, time limited)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 15.0,
        max_bytes: int = MAX_BUNDLE_BYTES,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        if not url.startswith("https://"):
            raise SourceError(f"policy URL {url!r} must use https://")
        self.url = url
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.verify = verify

    @property
    def name(self) -> str:
        """The URL."""
        return self.url

    def fetch(self) -> Fetched | None:
        """GET the bundle; a 404 means the source holds none."""
        try:
            with (
                httpx.Client(verify=self.verify, timeout=self.timeout_s) as client,
                client.stream("GET", self.url) as response,
            ):
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise SourceError(f"policy URL {self.url} answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_bytes:
                        break
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot fetch policy from {self.url}: {exc}") from None
        return Fetched(b"".join(chunks)[: self.max_bytes + 1], f"url {self.url}")


def parse_source(spec: str | Mapping[str, Any]) -> PolicySource:
    """Build a source from a spec string or a ``{"kind", "url"/"path", ...}`` mapping."""
    if isinstance(spec, Mapping):
        kind = spec.get("kind")
        if kind == "dir":
            return DirectorySource(Path(str(spec["path"])).expanduser())
        if kind == "git":
            return GitSource(
                str(spec["url"]), spec.get("branch"), str(spec.get("path", DEFAULT_GIT_PATH))
            )
        if kind == "https":
            return HttpsSource(str(spec["url"]))
        raise SourceError(f"policy source {dict(spec)!r}: 'kind' must be dir, git or https")
    if spec.startswith("https://"):
        return HttpsSource(spec)
    if spec.startswith("http://"):
        raise SourceError(f"policy source {spec!r}: plain http is refused; use https://")
    if spec.startswith("git+"):
        url, _, fragment = spec[4:].partition("#")
        branch, _, path = fragment.partition(":")
        return GitSource(url, branch or None, path or DEFAULT_GIT_PATH)
    if spec.startswith("dir:"):
        spec = spec[4:]
    return DirectorySource(Path(spec).expanduser())


def configured_sources(settings_file: Path | None = None) -> list[PolicySource]:
    """Sources from ``[policy] sources`` in ``config_dir()/settings.toml`` (none if absent)."""
    path = settings_file or paths.config_dir() / "settings.toml"
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read policy sources from {path}: {exc}") from None
    specs = (raw.get("policy") or {}).get("sources") or []
    if not isinstance(specs, list):
        raise SourceError(f"{path}: [policy] sources must be a list of source specs")
    return [parse_source(s) for s in specs]


def _peek_serial(data: bytes) -> int:
    try:
        serial = json.loads(data).get("serial")
    except (ValueError, AttributeError):
        return 0
    return serial if isinstance(serial, int) else 0


def pull(store: PolicyStore, sources: Iterable[PolicySource]) -> list[ApplyResult]:
    """Fetch every source and offer the bundles to ``store``, highest serial first."""
    results: list[ApplyResult] = []
    fetched: list[Fetched] = []
    for source in sources:
        try:
            got = source.fetch()
        except SourceError as exc:
            logger.warning("%s", exc)
            results.append(ApplyResult(False, False, None, str(exc), source.name))
            continue
        if got is not None:
            fetched.append(got)
    fetched.sort(key=lambda f: _peek_serial(f.data), reverse=True)
    results.extend(store.apply(f.data, f.origin) for f in fetched)
    return results


def directory_sources(sources: Sequence[PolicySource]) -> list[DirectorySource]:
    """The directory sources among ``sources`` (the ones worth watching for drops)."""
    return [s for s in sources if isinstance(s, DirectorySource)]
