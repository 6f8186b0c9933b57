"""Search and report over what the collector stored: entries, devices, alerts, egress.

Times are compared as the journal writes them (UTC ISO 8601 with a ``Z``), which sorts
as text on both SQLite and PostgreSQL. A device is **silent** when nothing (no upload,
no heartbeat) arrived within the silence window; that alert is computed when asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from onbox.audit.entry import format_time, parse_time
from onbox.collector.epochs import epochs_by_device, lineage
from onbox.collector.store import Store

ENTRY_COLUMNS = (
    "device",
    "seq",
    "time",
    "kind",
    "repo",
    "path",
    "label",
    "destination",
    "destination_kind",
    "bytes",
    "tokens_in",
    "tokens_out",
    "os_user",
    "git_email",
    "hash",
)
ALERT_KINDS = (
    "gap",
    "fork",
    "truncation",
    "rewritten",
    "tampered",
    "unknown-device",
    "retired-key",
    "re-enrolled",
    "silent",
)


@dataclass(frozen=True)
class EntryQuery:
    """Filters for :func:`find_entries`; ``None`` matches everything."""

    device: str | None = None  # any root key of a workstation finds all its epochs
    user: str | None = None  # OS user or git email
    repo: str | None = None
    path: str | None = None
    label: str | None = None
    destination: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    with_line: bool = False


def find_entries(store: Store, query: EntryQuery) -> list[dict[str, Any]]:
    """Entries matching ``query``, newest first (at most ``limit``)."""
    where, params = ["1 = 1"], []
    if query.device is not None:
        with store.read() as tx:
            roots = lineage(tx, query.device)
        where.append(f"device IN ({', '.join('?' for _ in roots)})")
        params += roots
    for column, value in (
        ("repo", query.repo),
        ("path", query.path),
        ("label", query.label),
        ("destination", query.destination),
        ("kind", query.kind),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.user is not None:
        where.append("(os_user = ? OR git_email = ?)")
        params += [query.user, query.user]
    if query.since is not None:
        where.append("time >= ?")
        params.append(format_time(query.since))
    if query.until is not None:
        where.append("time <= ?")
        params.append(format_time(query.until))
    columns = ENTRY_COLUMNS + (("line",) if query.with_line else ())
    sql = (
        f"SELECT {', '.join(columns)} FROM entries WHERE {' AND '.join(where)}"
        f" ORDER BY time DESC, seq DESC LIMIT {max(0, int(query.limit))}"
    )
    with store.read() as tx:
        rows = tx.fetchall(sql, params)
    found = [dict(zip(columns, row, strict=True)) for row in rows]
    for item in found:
        if "line" in item:
            item["entry"] = json.loads(item.pop("line"))
    return found


def list_alerts(
    store: Store, *, open_only: bool = True, silence: timedelta | None = None
) -> list[dict[str, Any]]:
    """Stored alerts (open ones by default), plus a ``silent`` alert per silent device."""
    sql = "SELECT id, device, kind, first_seq, last_seq, detail, created, resolved FROM alerts"
    if open_only:
        sql += " WHERE resolved IS NULL"
    with store.read() as tx:
        rows = tx.fetchall(sql + " ORDER BY created DESC, id DESC")
    names = ("id", "device", "kind", "first_seq", "last_seq", "detail", "created", "resolved")
    alerts = [dict(zip(names, row, strict=True)) for row in rows]
    if silence is not None:
        for device in list_devices(store, silence=silence):
            if device["silent"]:
                alerts.insert(
                    0,
                    {
                        "id": None,
                        "device": device["device"],
                        "kind": "silent",
                        "first_seq": None,
                        "last_seq": None,
                        "detail": f"nothing from this device since {device['last_seen']} "
                        f"(window {int(silence.total_seconds() // 60)} min)",
                        "created": format_time(datetime.now(UTC)),
                        "resolved": None,
                    },
                )
    return alerts


def list_devices(store: Store, *, silence: timedelta | None = None) -> list[dict[str, Any]]:
    """Every device with its chain status (``ok`` or the open alert kinds)."""
    names = (
        "device",
        "status",
        "first_seen",
        "last_seen",
        "checkpoint_seq",
        "checkpoint_time",
        "head_seq",
        "entries",
    )
    with store.read() as tx:
        rows = tx.fetchall(f"SELECT {', '.join(names)} FROM devices ORDER BY device")
        open_kinds = tx.fetchall(
            "SELECT device, kind, COUNT(*) FROM alerts WHERE resolved IS NULL GROUP BY device, kind"
        )
        epochs = epochs_by_device(tx)
    problems: dict[str, list[str]] = {}
    for device, kind, _count in open_kinds:
        problems.setdefault(str(device), []).append(str(kind))
    now = datetime.now(UTC)
    devices = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        last_seen = item["last_seen"]
        item["silent"] = bool(
            silence is not None
            and item["status"] in ("enrolled", "tofu")
            and last_seen
            and parse_time(str(last_seen)) < now - silence
        )
        kinds = sorted(set(problems.get(str(item["device"]), [])))
        if item["silent"]:
            kinds.append("silent")
        item["chain"] = "ok" if not kinds else ", ".join(kinds)
        item["epoch"] = epochs.get(str(item["device"]))  # None: never re-enrolled
        devices.append(item)
    return devices


def egress_summary(store: Store, *, days: int = 30) -> dict[str, Any]:
    """Egress by label and destination, by day, and token volume per cloud destination."""
    since = format_time(datetime.now(UTC) - timedelta(days=days))[:10]
    with store.read() as tx:  # the per-day rollups ingest keeps: cheap at any size
        by_pair = tx.fetchall(
            "SELECT label, destination, SUM(requests), SUM(bytes) FROM egress_rollup"
            " WHERE day >= ? GROUP BY label, destination ORDER BY SUM(requests) DESC",
            (since,),
        )
        by_day = tx.fetchall(
            "SELECT day, label, SUM(requests) FROM egress_rollup WHERE day >= ?"
            " GROUP BY day, label ORDER BY day, label",
            (since,),
        )
        tokens = tx.fetchall(
            "SELECT destination, SUM(tokens_in), SUM(tokens_out) FROM tokens_rollup"
            " WHERE day >= ? GROUP BY destination ORDER BY SUM(tokens_in) DESC",
            (since,),
        )
    return {
        "days": days,
        "by_label_destination": [
            {
                "label": r[0] or None,
                "destination": r[1] or None,
                "requests": int(r[2]),
                "bytes": int(r[3]),
            }
            for r in by_pair
        ],
        "by_day": [{"day": r[0], "label": r[1] or None, "requests": int(r[2])} for r in by_day],
        "tokens": [
            {"destination": r[0], "tokens_in": int(r[1]), "tokens_out": int(r[2])} for r in tokens
        ],
    }


def enrol(store: Store, device: str, name: str | None = None) -> bool:
    """Approve ``device``; True when it was not enrolled before. Resolves its refusals."""
    now = format_time(datetime.now(UTC))
    with store.transaction(device) as tx:
        row = tx.fetchone("SELECT status FROM devices WHERE device = ?", (device,))
        if row is None:
            tx.execute(
                "INSERT INTO devices (device, status, name, enrolled_at) VALUES (?, 'enrolled', ?, ?)",
                (device, name, now),
            )
        else:
            tx.execute(
                "UPDATE devices SET status = 'enrolled', name = COALESCE(?, name), enrolled_at = ?"
                " WHERE device = ?",
                (name, now, device),
            )
        tx.execute(
            "UPDATE alerts SET resolved = ? WHERE device = ? AND kind = 'unknown-device'"
            " AND resolved IS NULL",
            (now, device),
        )
        return row is None or row[0] != "enrolled"
