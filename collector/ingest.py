"""Ingest: verify one upload (format: :mod:`onbox.audit.upload`) and store it once.

Order of checks, cheapest refusal first; nothing is stored from a refused upload:

1. size and shape (413, 400), the signed checkpoint and its claim over every entry byte
   (401, 400 when the entries were cut or altered in transit);
2. the device's key chain from its enrolled root key (401), enrolment (403, or
   trust-on-first-use when configured);
3. every entry's exact form, hash and signature by the key in effect, and the chain
   inside the upload (422);
4. against what the collector already holds for the device, under the device's lock:
   a seq already stored with another hash is a **fork** (409); new entries that do not
   link to the stored one before them are **rewritten** history (409); a checkpoint
   below an earlier one is **truncation**; a first new seq past the stored ones opens a
   **gap** (stored, alerted, closed when the missing entries arrive).

Replays store nothing twice: ``(device, seq)`` is the key and equal entries are counted
as duplicates. Alerts are kept with a dedupe key so a replayed fault alerts once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onbox.audit.checkpoint import checkpoint_problem
from onbox.audit.upload import UPLOAD_TYPE, entries_digest
from onbox.collector.chain import KeySpan, key_timeline
from onbox.collector.epochs import retired_refusal
from onbox.collector.errors import UploadRejected
from onbox.collector.store import ENTRY_COLUMNS, ON_BOX_KINDS, EntryRow, Store, Tx
from onbox.collector.verifier import EntryVerifier, shared_verifier

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 50_000


@dataclass
class Enrolment:
    """Which devices may upload: an admin-approved list, or trust on first use."""

    approved: Collection[str] = ()
    trust_on_first_use: bool = False


@dataclass
class IngestResult:
    """What the collector answers to an accepted upload."""

    device: str
    stored: int = 0
    duplicates: int = 0
    acked_seq: int | None = None  # the upload's last seq, now held
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The response body."""
        return {
            "ok": True,
            "device": self.device,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "acked_seq": self.acked_seq,
            "alerts": self.alerts,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_upload(raw: bytes) -> dict[str, Any]:
    """The upload object, shape-checked; raises :class:`UploadRejected`."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise UploadRejected(413, f"upload exceeds {MAX_UPLOAD_BYTES} bytes; send smaller batches")
    try:
        upload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UploadRejected(400, f"upload is not JSON (cut short in transit?): {exc}") from exc
    if not isinstance(upload, dict) or upload.get("type") != UPLOAD_TYPE or upload.get("v") != 1:
        raise UploadRejected(400, f"not an {UPLOAD_TYPE} v1 object")
    entries, history = upload.get("entries"), upload.get("key_history")
    if not isinstance(upload.get("device"), str) or not isinstance(upload.get("checkpoint"), dict):
        raise UploadRejected(400, "upload lacks its device or checkpoint")
    for name, value in (("entries", entries), ("key_history", history)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UploadRejected(400, f"{name} must be a list of journal lines")
    if len(upload["entries"]) > MAX_ENTRIES:
        raise UploadRejected(
            413, f"upload holds more than {MAX_ENTRIES} entries; send smaller batches"
        )
    return upload


def _claims(upload: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    checkpoint = upload["checkpoint"]
    why = checkpoint_problem(checkpoint)
    if why is not None:
        raise UploadRejected(401, f"upload signature: {why}")
    if checkpoint.get("device") != upload["device"]:
        raise UploadRejected(401, "upload checkpoint is for another device")
    claims = checkpoint.get("upload")
    if not isinstance(claims, dict):
        raise UploadRejected(400, "checkpoint carries no upload claim")
    entries = upload["entries"]
    if claims.get("count") != len(entries) or claims.get("sha256") != entries_digest(entries):
        raise UploadRejected(
            400, "entries differ from what the device signed (cut or altered in transit); resend"
        )
    first = claims.get("first_seq")
    if entries and (not isinstance(first, int) or isinstance(first, bool) or first < 0):
        raise UploadRejected(400, "upload claim lacks a valid first_seq")
    return checkpoint, first if entries else None


def ingest(
    store: Store, raw: bytes, enrolment: Enrolment, verifier: EntryVerifier | None = None
) -> IngestResult:
    """Verify and store one upload; raises :class:`UploadRejected` (with alerts kept).

    ``verifier`` checks the entries (default: this process's, which spreads large
    uploads over a worker process per core).
    """
    upload = parse_upload(raw)
    device: str = upload["device"]
    checkpoint, first_seq = _claims(upload)
    spans = key_timeline(device, upload["key_history"])
    if checkpoint["key"] not in {s.fingerprint for s in spans}:
        raise UploadRejected(
            401, f"upload signed by key {checkpoint['key']}, not one of {device}'s"
        )
    unadmitted = _admitted(store, device, enrolment)
    if unadmitted is not None:
        raise UploadRejected(403, unadmitted)
    try:
        entries = (
            (verifier or shared_verifier()).check(device, upload["entries"], first_seq, spans)
            if first_seq is not None
            else []
        )
    except UploadRejected as exc:
        _alert_now(store, device, "tampered", str(exc), detail=f"{exc}; nothing stored")
        raise
    with store.transaction(device) as tx:
        result, refusal = _apply(tx, device, checkpoint, spans, entries, upload["entries"])
    if refusal is not None:  # raised only now: the alerts above are committed
        raise refusal
    return result


def _admitted(store: Store, device: str, enrolment: Enrolment) -> str | None:
    """None when ``device`` may upload, else why not (alerted; answered with 403)."""
    now = _now()
    with store.transaction(device) as tx:
        row = tx.fetchone("SELECT status FROM devices WHERE device = ?", (device,))
        status = row[0] if row else None
        if status in ("enrolled", "tofu"):
            return None
        if status == "retired":  # re-enrolled under a new root key (onbox.collector.epochs)
            why = retired_refusal(tx, device)
            tx.execute("UPDATE devices SET last_seen = ? WHERE device = ?", (now, device))
            _alert(tx, device, "retired-key", "upload", f"upload refused: {why}")
            return why
        if device in enrolment.approved:
            new_status = "enrolled"
        elif enrolment.trust_on_first_use:
            new_status = "tofu"
        else:
            new_status = "unknown"
        if row is None:
            tx.execute(
                "INSERT INTO devices (device, status, first_seen, last_seen) VALUES (?, ?, ?, ?)",
                (device, new_status, now, now),
            )
        else:
            tx.execute(
                "UPDATE devices SET status = ?, last_seen = ? WHERE device = ?",
                (new_status, now, device),
            )
        if new_status == "enrolled":  # approved by the list: earlier refusals are settled
            tx.execute(
                "UPDATE alerts SET resolved = ? WHERE device = ? AND kind = 'unknown-device'"
                " AND resolved IS NULL",
                (now, device),
            )
            return None
        if new_status == "tofu":
            _alert(tx, device, "unknown-device", "tofu", f"device {device} enrolled on first use")
            return None
        _alert(
            tx,
            device,
            "unknown-device",
            "refused",
            f"upload from unenrolled device {device} refused",
        )
        return (
            f"device {device} is not enrolled; an admin enrols it with "
            f"`onbox collector enrol {device}`, or, when it is a reinstalled workstation "
            f"with a new root key, `onbox collector enrol OLD_DEVICE --new-key {device}`"
        )


def _apply(
    tx: Tx,
    device: str,
    checkpoint: dict[str, Any],
    spans: Sequence[KeySpan],
    entries: list[EntryRow],
    lines: Sequence[str],
) -> tuple[IngestResult, UploadRejected | None]:
    result = IngestResult(device)
    row = tx.fetchone(
        "SELECT max_checkpoint_seq, checkpoint_time FROM devices WHERE device = ?", (device,)
    )
    highest = row[0] if row and row[0] is not None else -1
    cp_seq, cp_head = int(checkpoint["seq"]), str(checkpoint["head"])
    problems = _key_conflicts(tx, device, spans)
    if cp_seq < highest:
        _alert(
            tx,
            device,
            "truncation",
            str(cp_seq),
            f"journal head is seq {cp_seq}, below seq {highest} of an earlier checkpoint: "
            "entries were removed or an older copy was restored",
            first=cp_seq + 1,
            last=highest,
            out=result,
        )
    held = _held(tx, device, entries, cp_seq)
    stored_cp = held.get(cp_seq)
    if stored_cp is not None and stored_cp[0] != cp_head:
        problems.append(
            (
                "fork",
                cp_seq,
                f"checkpoint names entry {cp_seq} {cp_head[:16]}…, "
                f"the collector holds {stored_cp[0][:16]}…",
            )
        )
    new: list[tuple[EntryRow, str]] = []
    for entry, line in zip(entries, lines, strict=True):
        have = held.get(entry.seq)
        if have is None:
            new.append((entry, line))
        elif have[0] == entry.hash:
            result.duplicates += 1
        else:
            problems.append(
                (
                    "fork",
                    entry.seq,
                    f"seq {entry.seq} arrived with hash "
                    f"{entry.hash[:16]}…, the collector holds {have[0][:16]}…",
                )
            )
            break
    if new and not problems:
        problems.extend(_link_problems(tx, device, held, new, result))
    if problems:
        kind, seq, what = problems[0]
        kind = "rewritten" if kind == "fork" and cp_seq < highest else kind
        _alert(tx, device, kind, str(seq), what, first=seq, last=seq, out=result)
        _touch(tx, device, checkpoint, highest, stored=0)
        return result, UploadRejected(409, f"{kind}: {what}; nothing stored")
    _store(tx, device, spans, new)
    result.stored = len(new)
    result.acked_seq = entries[-1].seq if entries else None
    _close_gaps(tx, device)
    _touch(tx, device, checkpoint, highest, stored=len(new))
    return result, None


def _held(
    tx: Tx, device: str, entries: Sequence[EntryRow], cp_seq: int
) -> dict[int, tuple[str, str]]:
    """``seq -> (hash, prev)`` stored for this upload's seqs, the ones around them and
    the checkpoint's."""
    rows = tx.fetchall(
        "SELECT seq, hash, prev FROM entries WHERE device = ? AND seq = ?", (device, cp_seq)
    )
    if entries:
        rows += tx.fetchall(
            "SELECT seq, hash, prev FROM entries WHERE device = ? AND seq BETWEEN ? AND ?",
            (device, entries[0].seq - 1, entries[-1].seq + 1),
        )
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}


def _link_problems(
    tx: Tx,
    device: str,
    held: dict[int, tuple[str, str]],
    new: list[tuple[EntryRow, str]],
    result: IngestResult,
) -> list[tuple[str, int, str]]:
    first, last = new[0][0], new[-1][0]
    before = held.get(first.seq - 1)
    if before is not None and before[0] != first.prev:
        return [
            (
                "rewritten",
                first.seq,
                f"entry {first.seq} does not link to the entry "
                f"{first.seq - 1} the collector holds: the device re-sent a rewritten history",
            )
        ]
    if before is None and first.seq > 0:
        row = tx.fetchone(
            "SELECT MAX(seq) FROM entries WHERE device = ? AND seq < ?", (device, first.seq)
        )
        start = int(row[0]) + 1 if row and row[0] is not None else 0
        _alert(
            tx,
            device,
            "gap",
            f"{start}-{first.seq - 1}",
            f"seq {start}–{first.seq - 1} never arrived; on the device run "
            f"`onbox journal ship --now` (or export them) to fill the gap",
            first=start,
            last=first.seq - 1,
            out=result,
        )
    after = held.get(last.seq + 1)
    if after is not None and after[1] != last.hash:
        return [
            (
                "rewritten",
                last.seq,
                f"entry {last.seq + 1} held by the collector does not "
                f"link to the uploaded entry {last.seq}",
            )
        ]
    return []


def _key_conflicts(tx: Tx, device: str, spans: Sequence[KeySpan]) -> list[tuple[str, int, str]]:
    rows = tx.fetchall("SELECT fingerprint, from_seq FROM device_keys WHERE device = ?", (device,))
    known = {str(r[0]): int(r[1]) for r in rows}
    by_seq = {seq: fp for fp, seq in known.items()}
    for span in spans:
        other = by_seq.get(span.from_seq)
        if other is not None and other != span.fingerprint:
            return [
                (
                    "fork",
                    span.from_seq,
                    f"key history forks at seq {span.from_seq}: "
                    f"{span.fingerprint} here, {other} held",
                )
            ]
    return []


def _store(tx: Tx, device: str, spans: Sequence[KeySpan], new: list[tuple[EntryRow, str]]) -> None:
    tx.executemany(
        "INSERT INTO device_keys (device, fingerprint, public_key, from_seq) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(device, s.fingerprint, s.public_b64, s.from_seq) for s in spans],
    )
    received = _now()
    # _apply found none of these seqs held, under the device's lock: one bulk insert
    tx.insert_new(
        "entries", ENTRY_COLUMNS, [(device, *entry, line, received) for entry, line in new]
    )
    _roll_up(tx, [entry for entry, _ in new])


def _roll_up(tx: Tx, rows: Sequence[EntryRow]) -> None:
    """Add the new entries to the dashboard's per-day rollups (exact: only new rows)."""
    egress: dict[tuple[str, str, str], list[int]] = {}
    tokens: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        name = row.destination
        if row.kind == "egress":
            total = egress.setdefault((row.time[:10], row.label or "", name or ""), [0, 0])
            total[0] += 1
            total[1] += row.bytes or 0
        elif (
            row.kind == "completion"
            and name is not None
            and (row.destination_kind or "") not in ON_BOX_KINDS
        ):
            total = tokens.setdefault((row.time[:10], name), [0, 0])
            total[0] += row.tokens_in or 0
            total[1] += row.tokens_out or 0
    tx.executemany(
        "INSERT INTO egress_rollup (day, label, destination, requests, bytes)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, label, destination) DO UPDATE SET"
        " requests = egress_rollup.requests + excluded.requests,"
        " bytes = egress_rollup.bytes + excluded.bytes",
        [(*key, n, size) for key, (n, size) in egress.items()],
    )
    tx.executemany(
        "INSERT INTO tokens_rollup (day, destination, tokens_in, tokens_out)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (day, destination) DO UPDATE SET"
        " tokens_in = tokens_rollup.tokens_in + excluded.tokens_in,"
        " tokens_out = tokens_rollup.tokens_out + excluded.tokens_out",
        [(*key, t_in, t_out) for key, (t_in, t_out) in tokens.items()],
    )


def _close_gaps(tx: Tx, device: str) -> None:
    rows = tx.fetchall(
        "SELECT id, first_seq, last_seq FROM alerts WHERE device = ? AND kind = 'gap'"
        " AND resolved IS NULL",
        (device,),
    )
    for alert_id, first, last in rows:
        count = tx.fetchone(
            "SELECT COUNT(*) FROM entries WHERE device = ? AND seq BETWEEN ? AND ?",
            (device, first, last),
        )
        if count and int(count[0]) == int(last) - int(first) + 1:
            tx.execute("UPDATE alerts SET resolved = ? WHERE id = ?", (_now(), alert_id))


def _touch(tx: Tx, device: str, checkpoint: dict[str, Any], highest: int, *, stored: int) -> None:
    seq = int(checkpoint["seq"])
    tx.execute(
        "UPDATE devices SET last_seen = ?, checkpoint_seq = ?, checkpoint_head = ?,"
        " checkpoint_time = ?, max_checkpoint_seq = ?, entries = entries + ?,"
        " head_seq = (SELECT MAX(seq) FROM entries WHERE device = ?) WHERE device = ?",
        (
            _now(),
            seq,
            str(checkpoint["head"]),
            str(checkpoint.get("time")),
            max(seq, highest),
            stored,
            device,
            device,
        ),
    )


def _alert(
    tx: Tx,
    device: str,
    kind: str,
    dedupe: str,
    detail: str,
    *,
    first: int | None = None,
    last: int | None = None,
    out: IngestResult | None = None,
) -> None:
    tx.execute(
        "INSERT INTO alerts (device, kind, dedupe, first_seq, last_seq, detail, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (device, kind, dedupe, first, last, detail, _now()),
    )
    logger.warning("collector alert %s for %s: %s", kind, device, detail)
    if out is not None:
        out.alerts.append({"kind": kind, "first_seq": first, "last_seq": last, "detail": detail})


def _alert_now(store: Store, device: str, kind: str, dedupe: str, *, detail: str) -> None:
    with store.transaction(device) as tx:
        if tx.fetchone("SELECT 1 FROM devices WHERE device = ?", (device,)) is not None:
            _alert(tx, device, kind, dedupe, detail)
