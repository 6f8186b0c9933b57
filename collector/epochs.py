"""Re-enrolment: a reinstalled workstation continues under a new root key, as a new epoch.

A device is known by its root key's fingerprint, and every entry it uploads must chain
back to that key. A reinstalled workstation has lost its key directory and starts a new
journal under a new root key: to the collector that is a stranger (403, an
``unknown-device`` alert). Only an admin can say it is the same workstation::

    onbox collector enrol OLD_DEVICE --new-key NEW_ROOT_FINGERPRINT

:func:`re_enrol` then, in one transaction: enrols the new root, **retires** the old one
(later uploads signed under it are refused with 403 and a ``retired-key`` alert: the
old key is no longer in the workstation's hands, and may be in someone else's), links
both in ``device_epochs`` (one workstation, epochs 1, 2, …) and records a
``re-enrolled`` alert naming who did it, which the SIEM forwarder sends on like any
alert. What was stored under the old root stays as it is, under the old fingerprint:
its chain is complete and still verifies; the new chain starts at seq 0 under the new
fingerprint. Searching either fingerprint finds the whole workstation
(:func:`lineage`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onbox.audit.entry import format_time
from onbox.audit.keys import FINGERPRINT_HEX
from onbox.collector.errors import CollectorError
from onbox.collector.store import Store, Tx

_TABLE = """
CREATE TABLE IF NOT EXISTS device_epochs (
    device TEXT PRIMARY KEY,
    workstation TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    replaces TEXT,
    enrolled_at TEXT NOT NULL,
    admin TEXT,
    reason TEXT
)
"""
_FINGERPRINT = re.compile(f"[0-9a-f]{{{FINGERPRINT_HEX}}}")


class ReEnrolRefused(CollectorError):
    """The re-enrolment does not fit what the collector knows; nothing changed."""


@dataclass(frozen=True)
class ReEnrolment:
    """What :func:`re_enrol` did."""

    workstation: str  # the workstation's first root fingerprint
    old: str
    new: str
    epoch: int  # the new root's epoch (the first root is epoch 1)
    old_entries: int
    old_head_seq: int | None


def check_fingerprint(text: str) -> str:
    """``text`` if it is a device fingerprint; ValueError saying what one looks like."""
    if not _FINGERPRINT.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a device fingerprint ({FINGERPRINT_HEX} lowercase hex digits, "
            "as `onbox keys show` prints it on the workstation)"
        )
    return text


def re_enrol(
    store: Store,
    device: str,
    new_key: str,
    *,
    name: str | None = None,
    admin: str | None = None,
    reason: str | None = None,
) -> ReEnrolment:
    """Continue enrolled ``device`` under the root key ``new_key`` (module docstring).

    Raises ValueError for a malformed fingerprint and :class:`ReEnrolRefused` when
    ``device`` is not an admitted device or ``new_key`` already belongs elsewhere.
    """
    check_fingerprint(device)
    check_fingerprint(new_key)
    if new_key == device:
        raise ValueError("--new-key names the device's own root key; give the new one")
    now = format_time(datetime.now(UTC))
    first, second = sorted((device, new_key))
    with store.transaction(first) as tx:
        if tx.dialect == "postgresql":  # both devices' ingest waits for this change
            tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (second,))
        tx.execute(_TABLE)
        old = _device(tx, device)
        if old is None or old["status"] not in ("enrolled", "tofu"):
            raise ReEnrolRefused(_why_not(tx, device, old))
        new = _device(tx, new_key)
        if (new is not None and new["status"] == "retired") or _epoch_row(tx, new_key):
            raise ReEnrolRefused(
                f"key {new_key} already belongs to a workstation's history; give the key "
                "the reinstalled workstation shows now (`onbox keys show`)"
            )
        lineage_row = _epoch_row(tx, device)
        workstation, epoch = (lineage_row[0], int(lineage_row[1])) if lineage_row else (device, 1)
        if lineage_row is None:
            tx.execute(
                "INSERT INTO device_epochs (device, workstation, epoch, enrolled_at)"
                " VALUES (?, ?, 1, ?)",
                (device, device, old["enrolled_at"] or old["first_seen"] or now),
            )
        tx.execute(
            "INSERT INTO device_epochs (device, workstation, epoch, replaces, enrolled_at,"
            " admin, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_key, workstation, epoch + 1, device, now, admin, reason),
        )
        tx.execute("UPDATE devices SET status = 'retired' WHERE device = ?", (device,))
        if new is None:
            tx.execute(
                "INSERT INTO devices (device, status, name, enrolled_at) VALUES (?, 'enrolled', ?, ?)",
                (new_key, name or old["name"], now),
            )
        else:
            tx.execute(
                "UPDATE devices SET status = 'enrolled', name = ?, enrolled_at = ? WHERE device = ?",
                (name or old["name"] or new["name"], now, new_key),
            )
        tx.execute(  # the new key's refused uploads are settled by this decision
            "UPDATE alerts SET resolved = ? WHERE device = ? AND kind = 'unknown-device'"
            " AND resolved IS NULL",
            (now, new_key),
        )
        head = old["head_seq"]
        detail = (
            f"device {device} re-enrolled under new root key {new_key} (epoch {epoch + 1}) by "
            f"{admin or 'an admin'}{f': {reason}' if reason else ''}; its {old['entries']} "
            f"entries up to seq {head if head is not None else '-'} stay stored under {device}, "
            "and uploads signed under its keys are refused from now on"
        )
        # A record of an admin's decision, not an open problem: resolved as it is made,
        # and forwarded to the SIEM like every alert.
        tx.execute(
            "INSERT INTO alerts (device, kind, dedupe, first_seq, last_seq, detail, created,"
            " resolved) VALUES (?, 're-enrolled', ?, NULL, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (device, new_key, head, detail, now, now),
        )
    return ReEnrolment(workstation, device, new_key, epoch + 1, int(old["entries"]), head)


def _device(tx: Tx, device: str) -> dict[str, Any] | None:
    names = ("status", "name", "enrolled_at", "first_seen", "head_seq", "entries")
    row = tx.fetchone(f"SELECT {', '.join(names)} FROM devices WHERE device = ?", (device,))
    return dict(zip(names, row, strict=True)) if row else None


def _epoch_row(tx: Tx, device: str) -> tuple[Any, ...] | None:
    return tx.fetchone("SELECT workstation, epoch FROM device_epochs WHERE device = ?", (device,))


def _why_not(tx: Tx, device: str, old: dict[str, Any] | None) -> str:
    if old is None:
        return (
            f"device {device} is unknown to the collector; a workstation that never shipped "
            f"is simply enrolled: `onbox collector enrol <its fingerprint>`"
        )
    if old["status"] == "retired":
        after = successor(tx, device)
        return f"device {device} was already re-enrolled as {after}; re-enrol {after} instead"
    return (
        f"device {device} was never admitted (status {old['status']}); enrol the new key "
        "on its own: `onbox collector enrol <new fingerprint>`"
    )


def successor(tx: Tx, device: str) -> str | None:
    """The root key that replaced ``device``, if it was re-enrolled."""
    if not _has_table(tx):
        return None
    row = tx.fetchone("SELECT device FROM device_epochs WHERE replaces = ?", (device,))
    return str(row[0]) if row else None


def retired_refusal(tx: Tx, device: str) -> str:
    """Why an upload under a retired root key is refused (the 403 message and alert)."""
    after = successor(tx, device)
    return (
        f"device {device} was re-enrolled under root key {after}: uploads signed under its "
        "old keys are refused. If this workstation was not reinstalled, its old key is in "
        "someone else's hands; investigate before enrolling anything"
    )


def lineage(tx: Tx, device: str) -> list[str]:
    """Every root fingerprint of ``device``'s workstation, oldest first (just it if none)."""
    if not _has_table(tx):
        return [device]
    rows = tx.fetchall(
        "SELECT device FROM device_epochs WHERE workstation ="
        " (SELECT workstation FROM device_epochs WHERE device = ?) ORDER BY epoch",
        (device,),
    )
    return [str(r[0]) for r in rows] or [device]


def epochs_by_device(tx: Tx) -> dict[str, dict[str, Any]]:
    """``device -> {"workstation", "epoch", "replaces", "replaced_by"}`` for re-enrolled ones."""
    if not _has_table(tx):
        return {}
    rows = tx.fetchall("SELECT device, workstation, epoch, replaces FROM device_epochs")
    found = {
        str(r[0]): {
            "workstation": str(r[1]),
            "epoch": int(r[2]),
            "replaces": r[3],
            "replaced_by": None,
        }
        for r in rows
    }
    for device, item in found.items():
        if item["replaces"] in found:
            found[item["replaces"]]["replaced_by"] = device
    return found


def _has_table(tx: Tx) -> bool:
    # created by the first re-enrolment; asked first so a read never fails on PostgreSQL
    if tx.dialect == "postgresql":
        row = tx.fetchone("SELECT to_regclass('device_epochs') IS NOT NULL")
        return bool(row and row[0])
    return tx.fetchone("SELECT 1 FROM sqlite_master WHERE name = 'device_epochs'") is not None
