"""Which collector replica forwards to the SIEM: one at a time, the others stand by.

Several ``onbox collector serve`` replicas share one database, and each would forward the
same alerts and egress events. Only the replica holding the *forwarding lead* forwards:

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a
  connection of its own. PostgreSQL keeps it exactly as long as that session lives, so a
  replica that dies, hangs up or loses the network loses the lead with its connection,
  and a standby takes it at its next try. The lock uses the two-``int4`` key space, which
  never meets the one-``bigint`` keys of the per-device ingest locks
  (``pg_advisory_xact_lock(hashtext(device))``).
- **SQLite** (one host): an exclusive ``flock`` on a file next to the database, released
  by the kernel when the process exits.

:meth:`Lead.hold` is asked before every batch; the leader checks there that its lock
connection still answers, so it stops forwarding as soon as it could have lost the lead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: the advisory lock's two int4 keys: "onbx" and 1 (the SIEM forwarder)
PG_LOCK_KEYS = (0x6F6E6278, 1)


class Lead(Protocol):
    """The forwarding lead: held by at most one replica at a time."""

    def hold(self) -> bool:
        """True while this replica holds the lead; takes it when it is free."""

    def release(self) -> None:
        """Give the lead up (a standby takes it at its next try)."""


class Solo:
    """Always the leader: a single forwarder, or a database nobody else shares."""

    def hold(self) -> bool:
        """Always True."""
        return True

    def release(self) -> None:
        """Nothing to give up."""


class _Announced:
    """Logs each change of lead once (a standby tries every few seconds)."""

    held = False
    name = "lead"

    def _changed(self, held: bool) -> bool:
        if held != self.held:
            if held:
                logger.info("this replica forwards to the SIEM (took the %s)", self.name)
            else:
                logger.info(
                    "standing by: another replica forwards to the SIEM (%s held)", self.name
                )
        self.held = held
        return held


class PostgresLead(_Announced):
    """The lead as a PostgreSQL session advisory lock on a connection of its own."""

    name = "PostgreSQL advisory lock"

    def __init__(self, url: str) -> None:
        self._url = url.replace("postgres+psycopg://", "postgresql://")
        self._conn: Any = None

    def hold(self) -> bool:
        """Ping the lock's session when leading; else try to take the lock."""
        import psycopg

        try:
            if self._conn is not None and self._conn.closed:
                self._lose("its connection closed")
            if self._conn is None:
                # named, so `pg_stat_activity` shows which replica leads (its pid)
                self._conn = psycopg.connect(
                    self._url, autocommit=True, application_name=f"onbox-siem-lead {os.getpid()}"
                )
            if self.held:
                self._conn.execute("SELECT 1")  # the session, and so its lock, is alive
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", PG_LOCK_KEYS).fetchone()
            return self._changed(bool(row and row[0]))
        except psycopg.Error as exc:
            self._lose(str(exc))  # the session is gone or going, its lock with it
            return False

    def _lose(self, why: str) -> None:
        if self.held:
            logger.warning("lost the SIEM forwarding lead: %s", why)
        self._drop()
        self.held = False

    def release(self) -> None:
        """Unlock and close the session."""
        if self._conn is not None and self.held:
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", PG_LOCK_KEYS)
        self._drop()
        self.held = False

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class FileLead(_Announced):
    """The lead as an exclusive, non-blocking lock on a file (replicas on one host)."""

    name = "lock file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._windows: Any = None

    def hold(self) -> bool:
        """Try the lock unless already held (the kernel keeps it while we live)."""
        if self.held:
            return True
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows
                import filelock

                self._windows = self._windows or filelock.FileLock(str(self.path) + ".win")
                try:
                    self._windows.acquire(timeout=0)
                except filelock.Timeout:
                    return self._changed(False)
                return self._changed(True)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._changed(False)
            return self._changed(True)
        except OSError as exc:
            logger.warning("SIEM forwarding lock %s: %s", self.path, exc)
            return False

    def release(self) -> None:
        """Unlock and close the file."""
        if self._windows is not None:  # pragma: no cover - Windows
            self._windows.release()
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        self.held = False


def lead_for(url: str) -> Lead:
    """The lead that fits the database at ``url`` (see the module docstring)."""
    if not url.startswith("sqlite:"):
        return PostgresLead(url)
    target = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not target or target == ":memory:":
        return Solo()  # an in-memory database is nobody else's
    return FileLead(Path(target + ".siem-lead"))
