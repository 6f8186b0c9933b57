"""SIEM forwarding: alerts and egress events out as JSON lines, in ECS field names.

Records follow the Elastic Common Schema (ECS 8.x): ``@timestamp``, ``event.*``,
``host.id`` (the device fingerprint), ``user.name``/``user.email`` (the entry's
``actor``), ``message``; Onbox-specific fields sit under ``onbox.*``. Every record
carries the device id and, for egress, the documented ``actor`` (``docs/journal.md``).

Egress event::

    {"@timestamp", "message", "event": {"kind": "event", "category": ["network"],
     "type": ["connection"], "action": "onbox-egress", "dataset": "onbox.egress",
     "id": <entry hash>, "sequence": <seq>},
     "host": {"id": <device>, "name": <actor.host>}, "user": {"name", "email"},
     "onbox": {"device", "seq", "label", "destination", "destination_kind", "repo", "path",
               "bytes", "actor": {...}}}

Alert::

    {"@timestamp", "message", "event": {"kind": "alert", "category": ["intrusion_detection"],
     "type": ["info"], "action": "onbox-<gap|fork|…>", "dataset": "onbox.alert",
     "severity": <1..4>, "id": "alert-<id>", "reason": <detail>},
     "host": {"id": <device>}, "onbox": {"device", "alert", "first_seq", "last_seq"}}

Sinks: a file (JSON lines, appended), syslog (RFC 5424 over TCP or TLS, octet-counted
framing per RFC 6587, the JSON as the message) and an HTTP event collector (Splunk HEC:
``POST`` with ``Authorization: Splunk <token>``). The forwarder keeps a cursor per sink
in the database, so a SIEM that is down for a while gets everything afterwards, once:
entries are read in ``(received, device, seq)`` order and only once they are
``LAG`` seconds old, so a transaction another replica commits late is not skipped.

Several replicas on one database forward through one of them: the holder of the
forwarding lead (:mod:`onbox.collector.leadership`: a PostgreSQL advisory lock, or a
lock file beside a SQLite database); the others stand by and take over when it dies.
A leader that dies after a sink took a batch but before its cursor moved leaves that
batch (at most ``BATCH`` records) to be sent again by the next leader; ``event.id`` is
stable, so a SIEM can drop the repeat.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from onbox.audit.entry import format_time
from onbox.collector.errors import StoreUnavailable
from onbox.collector.leadership import Lead, lead_for
from onbox.collector.store import Store

logger = logging.getLogger(__name__)

LAG = timedelta(seconds=10)
BATCH = 500
SEVERITY = {"fork": 4, "rewritten": 4, "tampered": 4, "truncation": 4, "gap": 3}
SEVERITY |= {"retired-key": 4, "unknown-device": 2, "silent": 2, "re-enrolled": 2}


class Sink(Protocol):
    """Where records go; ``send`` raises ``OSError``/``httpx.HTTPError`` when it cannot."""

    name: str

    def send(self, records: Sequence[dict[str, Any]]) -> None:
        """Deliver every record, or raise."""


def egress_record(row: dict[str, Any]) -> dict[str, Any]:
    """The ECS record of one stored egress entry (``row`` as the entries table holds it)."""
    entry = json.loads(row["line"])
    actor = entry["body"].get("actor") if isinstance(entry["body"].get("actor"), dict) else {}
    return {
        "@timestamp": row["time"],
        "message": f"{row['label']} code sent to {row['destination']} from {row['device']}",
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection"],
            "action": "onbox-egress",
            "dataset": "onbox.egress",
            "id": row["hash"],
            "sequence": row["seq"],
        },
        "host": {"id": row["device"], "name": actor.get("host")},
        "user": {"name": actor.get("osUser"), "email": actor.get("gitEmail")},
        "onbox": {
            "device": row["device"],
            "seq": row["seq"],
            "label": row["label"],
            "destination": row["destination"],
            "destination_kind": row["destination_kind"],
            "repo": row["repo"],
            "path": row["path"],
            "bytes": row["bytes"],
            "actor": actor,
        },
    }


def alert_record(row: dict[str, Any]) -> dict[str, Any]:
    """The ECS record of one alert."""
    return {
        "@timestamp": row["created"],
        "message": f"onbox {row['kind']} on device {row['device']}: {row['detail']}",
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "action": f"onbox-{row['kind']}",
            "dataset": "onbox.alert",
            "severity": SEVERITY.get(str(row["kind"]), 2),
            "id": f"alert-{row['id']}",
            "reason": row["detail"],
        },
        "host": {"id": row["device"]},
        "onbox": {
            "device": row["device"],
            "alert": row["kind"],
            "first_seq": row["first_seq"],
            "last_seq": row["last_seq"],
        },
    }


@dataclass
class FileSink:
    """Appends JSON lines to a file (for a log shipper to pick up)."""

    path: Path
    name: str = "file"

    def send(self, records: Sequence[dict[str, Any]]) -> None:
        """Append and fsync."""
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class SyslogSink:
    """RFC 5424 over TCP (or TLS), octet-counted; the ECS JSON is the message."""

    host: str
    port: int
    tls: bool = False
    ca_bundle: str | None = None
    name: str = "syslog"
    hostname: str = socket.gethostname()

    def send(self, records: Sequence[dict[str, Any]]) -> None:
        """One connection per batch; raises OSError when the receiver is away."""
        frames = b"".join(self._frame(r) for r in records)
        with socket.create_connection((self.host, self.port), timeout=10) as raw:
            if self.tls:
                context = ssl.create_default_context(cafile=self.ca_bundle)
                with context.wrap_socket(raw, server_hostname=self.host) as wrapped:
                    wrapped.sendall(frames)
            else:
                raw.sendall(frames)

    def _frame(self, record: dict[str, Any]) -> bytes:
        # PRI: facility 13 (log audit), severity 4 (warning) for alerts, 6 (info) otherwise
        severity = 4 if record["event"]["kind"] == "alert" else 6
        msgid = str(record["event"]["action"])[:32]
        header = f"<{13 * 8 + severity}>1 {record['@timestamp']} {self.hostname} onbox-collector - {msgid} - "
        message = header.encode() + json.dumps(record, sort_keys=True).encode("utf-8")
        return str(len(message)).encode() + b" " + message


@dataclass
class HecSink:
    """An HTTP event collector (Splunk HEC and compatible): one POST per batch."""

    url: str
    token: str
    ca_bundle: str | None = None
    name: str = "hec"

    def send(self, records: Sequence[dict[str, Any]]) -> None:
        """POST the batch; raises httpx.HTTPError on failure or a non-2xx answer."""
        body = "".join(
            json.dumps(
                {
                    "time": _epoch(r["@timestamp"]),
                    "host": r["host"]["id"],
                    "source": "onbox-collector",
                    "sourcetype": f"_json:{r['event']['dataset']}",
                    "event": r,
                }
            )
            for r in records
        )
        response = httpx.post(
            self.url,
            content=body.encode(),
            headers={"Authorization": f"Splunk {self.token}"},
            timeout=30,
            verify=self.ca_bundle or True,
        )
        response.raise_for_status()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_CURSORS = """
CREATE TABLE IF NOT EXISTS siem_cursors (
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    position TEXT NOT NULL,
    PRIMARY KEY (sink, stream)
)
"""
_ENTRY_COLUMNS = (
    "device, seq, hash, time, label, destination, destination_kind, repo, path, bytes, line,"
    " received"
)


class Forwarder:
    """Sends new alerts and egress events to each sink, from a cursor kept in the database."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        *,
        interval: float = 5.0,
        lead: Lead | None = None,
    ) -> None:
        self._store = store
        self._sinks = list(sinks)
        self._interval = interval
        self._lead = lead if lead is not None else lead_for(store.url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onbox-siem", daemon=True)
        with store.transaction() as tx:
            tx.execute(_CURSORS)

    def start(self) -> None:
        """Forward every ``interval`` seconds in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and hand the lead over."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._lead.release()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.forward_once()
            except StoreUnavailable as exc:  # PostgreSQL restarting: the next pass resumes
                logger.warning("SIEM forwarding paused: %s", exc)

    def forward_once(self, *, now: datetime | None = None) -> int:
        """One pass over every sink; the number of records delivered (0 standing by)."""
        sent = 0
        for sink in self._sinks:
            for stream in ("alerts", "egress"):
                if not self._lead.hold():  # asked per batch: a lost lead stops us at once
                    return sent
                try:
                    if stream == "alerts":
                        sent += self._alerts(sink)
                    else:
                        sent += self._egress(sink, now or datetime.now(UTC))
                except (OSError, httpx.HTTPError) as exc:
                    logger.warning("SIEM sink %s: %s (will retry)", sink.name, exc)
                    break
        return sent

    def _cursor(self, sink: str, stream: str, default: str) -> str:
        with self._store.read() as tx:
            row = tx.fetchone(
                "SELECT position FROM siem_cursors WHERE sink = ? AND stream = ?", (sink, stream)
            )
        return str(row[0]) if row else default

    def _advance(self, sink: str, stream: str, position: str) -> None:
        with self._store.transaction() as tx:
            if not tx.execute(
                "UPDATE siem_cursors SET position = ? WHERE sink = ? AND stream = ?",
                (position, sink, stream),
            ):
                tx.execute(
                    "INSERT INTO siem_cursors (sink, stream, position) VALUES (?, ?, ?)",
                    (sink, stream, position),
                )

    def _alerts(self, sink: Sink) -> int:
        after = int(self._cursor(sink.name, "alerts", "0"))
        names = ("id", "device", "kind", "first_seq", "last_seq", "detail", "created")
        with self._store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {', '.join(names)} FROM alerts WHERE id > ? ORDER BY id LIMIT {BATCH}",
                (after,),
            )
        if not rows:
            return 0
        records = [alert_record(dict(zip(names, r, strict=True))) for r in rows]
        sink.send(records)
        self._advance(sink.name, "alerts", str(rows[-1][0]))
        return len(records)

    def _egress(self, sink: Sink, now: datetime) -> int:
        position = json.loads(self._cursor(sink.name, "egress", '["", "", -1]'))
        horizon = format_time(now - LAG)
        names = tuple(c.strip() for c in _ENTRY_COLUMNS.split(","))
        with self._store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE kind = 'egress' AND received < ?"
                " AND (received > ? OR (received = ? AND (device > ? OR (device = ? AND seq > ?))))"
                f" ORDER BY received, device, seq LIMIT {BATCH}",
                (horizon, position[0], position[0], position[1], position[1], position[2]),
            )
        if not rows:
            return 0
        items = [dict(zip(names, r, strict=True)) for r in rows]
        sink.send([egress_record(item) for item in items])
        last = items[-1]
        self._advance(
            sink.name, "egress", json.dumps([last["received"], last["device"], last["seq"]])
        )
        return len(items)
