"""Where the collector keeps what it verified: SQLite for a pilot, PostgreSQL for a fleet.

The same SQL runs on both (``?`` placeholders, rewritten to ``%s`` for psycopg;
``INSERT … ON CONFLICT DO NOTHING`` for idempotence). The database URL picks the engine:
``sqlite:///path/collector.db`` (the default, under the data dir) or
``postgresql://user@host/db`` (any libpq connection string also works, e.g.
``host=/tmp/sock dbname=onbox``).

Several collector replicas may share one PostgreSQL: every ingest runs in one
transaction holding a per-device advisory lock, so two replicas never interleave one
device's chain checks, and the ``(device, seq)`` primary key stores each entry once.
New entries go in with one bulk statement (:meth:`Tx.insert_new`): PostgreSQL's ``COPY``,
SQLite's ``executemany``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from onbox.audit.stats import destination_of
from onbox.collector.errors import StoreUnavailable

logger = logging.getLogger(__name__)

#: destination kinds that run on the workstation (not counted as cloud tokens)
ON_BOX_KINDS = ("llama-cpp", "on-box", "onbox", "local")

_TABLES = """
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT,
    enrolled_at TEXT,
    first_seen TEXT,
    last_seen TEXT,
    checkpoint_seq BIGINT,
    checkpoint_head TEXT,
    checkpoint_time TEXT,
    max_checkpoint_seq BIGINT,
    head_seq BIGINT,
    entries BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS device_keys (
    device TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    PRIMARY KEY (device, fingerprint)
);
CREATE TABLE IF NOT EXISTS entries (
    device TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    repo TEXT,
    path TEXT,
    label TEXT,
    destination TEXT,
    destination_kind TEXT,
    bytes BIGINT,
    tokens_in BIGINT,
    tokens_out BIGINT,
    os_user TEXT,
    git_email TEXT,
    line TEXT NOT NULL,
    received TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX IF NOT EXISTS entries_time ON entries (time);
CREATE INDEX IF NOT EXISTS entries_device_time ON entries (device, time);
CREATE INDEX IF NOT EXISTS entries_kind_time ON entries (kind, time);
CREATE INDEX IF NOT EXISTS entries_received ON entries (received);
CREATE INDEX IF NOT EXISTS entries_device_kind_time ON entries (device, kind, time);
CREATE TABLE IF NOT EXISTS egress_rollup (
    day TEXT NOT NULL,
    label TEXT NOT NULL,
    destination TEXT NOT NULL,
    requests BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (day, label, destination)
);
CREATE TABLE IF NOT EXISTS tokens_rollup (
    day TEXT NOT NULL,
    destination TEXT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    PRIMARY KEY (day, destination)
);
"""

#: the ``entries`` columns, in the order :meth:`Tx.insert_new` receives them
ENTRY_COLUMNS = (
    "device", "seq", "hash", "prev", "time", "kind", "key", "repo", "path", "label",
    "destination", "destination_kind", "bytes", "tokens_in", "tokens_out", "os_user",
    "git_email", "line", "received",
)  # fmt: skip


class EntryRow(NamedTuple):
    """What the collector keeps of one checked entry, besides its device, line and arrival.

    Verification produces these (in worker processes for large uploads: a tuple of plain
    values crosses a process boundary far cheaper than the parsed entry).
    """

    seq: int
    hash: str
    prev: str
    time: str
    kind: str
    key: str
    repo: str | None
    path: str | None
    label: str | None
    destination: str | None
    destination_kind: str | None
    bytes: int | None
    tokens_in: int | None
    tokens_out: int | None
    os_user: str | None
    git_email: str | None


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def entry_row(entry: dict[str, Any]) -> EntryRow:
    """The searchable columns of a parsed, checked journal entry."""
    body = entry["body"]
    actor = body.get("actor")
    if not isinstance(actor, dict):
        actor = {}
    name, kind = destination_of(body) if body.get("destination") is not None else (None, None)
    label = body.get("label", body.get("to") if entry["kind"] == "label-changed" else None)
    return EntryRow(
        entry["seq"],
        entry["hash"],
        entry["prev"],
        entry["time"],
        entry["kind"],
        entry["key"],
        _text(body.get("repo")),
        _text(body.get("path")),
        _text(label),
        name,
        kind,
        _int(body.get("bytes", body.get("bytesSent"))),
        _int(body.get("tokensIn")),
        _int(body.get("tokensOut")),
        _text(actor.get("osUser")),
        _text(actor.get("gitEmail")),
    )


_ALERTS = {
    "sqlite": "CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT,",
    "postgresql": "CREATE TABLE IF NOT EXISTS alerts (id BIGSERIAL PRIMARY KEY,",
}
_ALERTS_REST = """
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe TEXT NOT NULL,
    first_seq BIGINT,
    last_seq BIGINT,
    detail TEXT NOT NULL,
    created TEXT NOT NULL,
    resolved TEXT,
    UNIQUE (device, kind, dedupe)
);
"""


class Tx:
    """One open transaction: ``execute``/``fetchall``/``fetchone`` with ``?`` placeholders."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return int(self._cursor.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row."""
        if rows:
            self._cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def insert_new(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows the caller knows are not held yet, in one bulk statement.

        PostgreSQL gets them through ``COPY`` (no per-row statement at all), SQLite through
        ``executemany``. Callers establish "not held" under the lock of the transaction
        (the device's advisory lock, SQLite's single writer); should a row be held after
        all, nothing is stored and the transaction fails with :class:`StoreUnavailable`
        (the sender retries and its entries then count as duplicates).
        """
        if not rows:
            return
        names = ", ".join(columns)
        try:
            if self.dialect == "postgresql":
                with self._cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * len(columns))
                self._cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        except Exception as exc:
            if type(exc).__name__ in ("IntegrityError", "UniqueViolation"):
                raise StoreUnavailable(
                    f"{table}: a row was stored by another writer meanwhile ({exc})"
                ) from exc
            raise

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in self._cursor.fetchall()]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None


class Store:
    """A connection to the collector's database (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite:") else "postgresql"
        self._lock = threading.Lock()
        self._conn: Any = None
        with self.transaction() as tx:
            for statement in (_TABLES + _ALERTS[self.dialect] + _ALERTS_REST).split(";"):
                if statement.strip():
                    tx.execute(statement)
            _backfill_rollups(tx)

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            # sqlite:///relative.db or sqlite:////absolute/path.db (SQLAlchemy's convention)
            target = self.url[len("sqlite:///") :] if self.url.startswith("sqlite:///") else ""
            if target and target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                target or ":memory:", isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        try:
            import psycopg
        except ImportError as exc:
            raise StoreUnavailable(
                "PostgreSQL needs psycopg: pip install 'onbox[collector]'"
            ) from exc
        url = self.url.replace("postgres+psycopg://", "postgresql://")
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    @contextlib.contextmanager
    def transaction(self, device: str | None = None) -> Iterator[Tx]:
        """One transaction; with ``device``, the only one touching that device right now."""
        with self._lock:
            conn = self._live()
            cursor = conn.cursor()
            try:
                if self.dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                else:
                    cursor.execute("BEGIN")
                    if device is not None:
                        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (device,))
                yield Tx(cursor, self.dialect)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
                self._drop_if_broken()
                if _database_error(exc):
                    raise StoreUnavailable(f"the database failed: {exc}") from exc
                raise
            else:
                try:
                    cursor.execute("COMMIT")
                except Exception as exc:
                    self._drop_if_broken()
                    raise StoreUnavailable(f"the database did not commit: {exc}") from exc
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A transaction for queries."""
        return self.transaction()

    def _live(self) -> Any:
        if self._conn is not None and self.dialect == "postgresql" and self._conn.closed:
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop_if_broken(self) -> None:
        if self.dialect == "postgresql" and self._conn is not None:
            if self._conn.closed or self._conn.broken:
                logger.warning("lost the PostgreSQL connection; reconnecting on next use")
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _backfill_rollups(tx: Tx) -> None:
    """Fill the dashboard's rollups from stored entries once (a database from before them)."""
    if tx.fetchone("SELECT 1 FROM egress_rollup LIMIT 1") is not None:
        return
    if tx.fetchone("SELECT 1 FROM entries WHERE kind = 'egress' LIMIT 1") is None:
        return
    tx.execute(
        "INSERT INTO egress_rollup (day, label, destination, requests, bytes)"
        " SELECT SUBSTR(time, 1, 10), COALESCE(label, ''), COALESCE(destination, ''), COUNT(*),"
        " COALESCE(SUM(bytes), 0) FROM entries WHERE kind = 'egress'"
        " GROUP BY SUBSTR(time, 1, 10), COALESCE(label, ''), COALESCE(destination, '')"
        " ON CONFLICT DO NOTHING"
    )
    tx.execute(
        "INSERT INTO tokens_rollup (day, destination, tokens_in, tokens_out)"
        " SELECT SUBSTR(time, 1, 10), destination, COALESCE(SUM(tokens_in), 0),"
        " COALESCE(SUM(tokens_out), 0) FROM entries WHERE kind = 'completion'"
        " AND destination IS NOT NULL AND COALESCE(destination_kind, '') NOT IN"
        f" ({', '.join(repr(k) for k in ON_BOX_KINDS)})"
        " GROUP BY SUBSTR(time, 1, 10), destination ON CONFLICT DO NOTHING"
    )


def _database_error(exc: BaseException) -> bool:
    """A fault of the database itself (gone, restarting, locked), not of our logic."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return type(exc).__module__.startswith("psycopg") and type(exc).__name__ in (
        "OperationalError",
        "InterfaceError",
        "AdminShutdown",
        "ConnectionFailure",
    )


def default_url(data_dir: Path) -> str:
    """The embedded default: SQLite under the data dir."""
    return f"sqlite:///{data_dir / 'collector.db'}"
