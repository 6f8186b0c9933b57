"""Who is at the keyboard: OS user, host and git ``user.email``, for every journal entry.

The journal answers "who sent what where"; every entry the server writes carries an
``actor`` object. ``git user.email`` is resolved per repository (repos may override the
global identity) and cached, so the lookup costs one ``git config`` per repo per process.
"""

from __future__ import annotations

import functools
import getpass
import logging
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@functools.cache
def os_identity() -> tuple[str, str]:
    """(OS user, host name) of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers)
        user = "unknown"
    return user, socket.gethostname()


@functools.lru_cache(maxsize=256)
def git_email(directory: str | None) -> str | None:
    """``git config user.email`` as seen from ``directory`` (or globally when ``None``)."""
    cmd = (
        ["git", "config", "user.email"]
        if directory is None
        else ["git", "-C", directory, "config", "user.email"]
    )
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    email = out.stdout.strip()
    return email or None


class ActorContext:
    """The actor of the request being served (set per request, read by the journal)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set_document(self, path: Path | None) -> None:
        """Attribute what follows on this thread to the repository holding ``path``."""
        self._local.directory = (
            str(path.parent) if path is not None and path.parent.exists() else None
        )

    def actor(self) -> dict[str, Any]:
        """``{"osUser", "host", "gitEmail"}`` for the current thread's document."""
        user, host = os_identity()
        directory = getattr(self._local, "directory", None)
        return {"osUser": user, "host": host, "gitEmail": git_email(directory)}


class ActorJournal:
    """Wraps a journal so that every entry carries the ``actor``; everything else passes through."""

    def __init__(self, journal: Any, actor: Callable[[], dict[str, Any]]) -> None:
        self._journal = journal
        self._actor = actor

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Any:
        """Append ``body`` plus ``actor``."""
        return self._journal.append(kind, {**body, "actor": self._actor()}, durable=durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)
