"""Shipping the journal to the collector: every entry after the last acknowledged seq.

State (``paths.data_dir()/"ship-state.json"``, replaced atomically)::

    {"collector": <url>, "device": <fingerprint>, "acked_seq": <int>, "acked_hash": <hex>,
     "last_attempt": <time>, "last_success": <time>, "last_error": <text or null>}

The journal itself is the offline queue: nothing is copied aside, so what waits survives
restarts and a day without network costs nothing but disk the journal uses anyway.
:func:`ship` reads complete lines after ``acked_seq`` in batches, signs each upload with
the journal key (:mod:`onbox.audit.upload`) and advances the state only when the
collector acknowledges; a batch cut off mid-way is simply sent again, and the collector
stores each ``(device, seq)`` once. With nothing new it sends a heartbeat, so silence
on the collector means the device really is silent.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from onbox.audit.entry import format_time
from onbox.audit.errors import CollectorUnreachable, JournalError, ShipError, UploadRefused
from onbox.audit.journal import Journal
from onbox.audit.keys import fsync_dir
from onbox.audit.segments import ProcessLock, list_segments
from onbox.audit.upload import build_upload

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ENTRIES = 2000
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
UPLOAD_PATH = "/v1/upload"


@dataclass
class ShipReport:
    """What one :func:`ship` call did."""

    uploads: int = 0
    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    acked_seq: int = -1
    alerts: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "uploads": self.uploads,
            "sent": self.sent,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "acked_seq": self.acked_seq,
            "alerts": self.alerts or [],
        }


def load_state(path: Path) -> dict[str, Any]:
    """The shipping state, or an empty one."""
    try:
        state: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return state
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable ship state %s (%s); starting from seq 0", path, exc)
        return {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def pending_lines(directory: Path, after_seq: int) -> Iterator[tuple[int, str]]:
    """``(seq, line)`` of every complete entry after ``after_seq``, oldest first."""
    segments = list_segments(directory)
    start = 0
    for i, (_, path) in enumerate(segments):
        first = _first_seq(path)
        if first is not None and first <= after_seq + 1:
            start = i
    for _, path in segments[start:]:
        with open(path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a line still being written (or torn): next time
                seq = _seq_of(raw)
                if seq is not None and seq > after_seq:
                    yield seq, raw[:-1].decode("utf-8")


def _first_seq(path: Path) -> int | None:
    with open(path, "rb") as handle:
        return _seq_of(handle.readline())


def _seq_of(raw: bytes) -> int | None:
    # Canonical order puts "seq" after "body", and "hash"/"sig" (hex, base64) follow: the
    # last ',"seq":' of a line is the entry's own. Scanning beats parsing every line.
    at = raw.rfind(b',"seq":')
    if at >= 0:
        end = at + 7
        while end < len(raw) and 48 <= raw[end] <= 57:
            end += 1
        if end > at + 7:
            return int(raw[at + 7 : end])
    try:
        value = json.loads(raw)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


def ship(
    journal: Journal,
    collector: str,
    state_path: Path,
    *,
    batch_entries: int = DEFAULT_BATCH_ENTRIES,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> ShipReport:
    """Upload everything after the acknowledged seq (or a heartbeat); see the module doc.

    Raises :class:`CollectorUnreachable` (state kept; retry later) or
    :class:`UploadRefused` (the collector's reason; shipping stops until it is fixed).
    """
    state_path.parent.mkdir(parents=True, exist_ok=True)
    lock = ProcessLock(state_path.with_name(state_path.name + ".lock"))
    lock.acquire()  # one shipper per state file: editor windows each run `onbox serve`
    try:
        return _ship_locked(
            journal, collector, state_path, batch_entries, batch_bytes, client, timeout
        )
    finally:
        lock.release()
        lock.close()


def _ship_locked(
    journal: Journal,
    collector: str,
    state_path: Path,
    batch_entries: int,
    batch_bytes: int,
    client: httpx.Client | None,
    timeout: float,
) -> ShipReport:
    url = collector.rstrip("/") + UPLOAD_PATH
    state = load_state(state_path)
    if state.get("collector") != collector or state.get("device") != journal.device_fingerprint:
        state = {"collector": collector, "device": journal.device_fingerprint, "acked_seq": -1}
    report = ShipReport(acked_seq=int(state.get("acked_seq", -1)))
    journal.flush()
    history = _key_history(journal.path, state)
    own = client or httpx.Client(timeout=timeout)
    try:
        while True:
            batch = _next_batch(journal.path, report.acked_seq, batch_entries, batch_bytes)
            if not batch and report.uploads:
                break
            first = batch[0][0] if batch else None
            upload = build_upload(journal, [line for _, line in batch], first, history)
            answer = _post(own, url, upload, state, state_path)
            report.uploads += 1
            report.sent += len(batch)
            report.stored += int(answer.get("stored", 0))
            report.duplicates += int(answer.get("duplicates", 0))
            if answer.get("alerts"):
                report.alerts = (report.alerts or []) + list(answer["alerts"])
            if batch:
                report.acked_seq = batch[-1][0]
                state.update(
                    acked_seq=report.acked_seq, acked_hash=json.loads(batch[-1][1])["hash"]
                )
            state.update(last_success=_now(), last_error=None)
            _save_state(state_path, state)
            if not batch:
                break
    finally:
        if client is None:
            own.close()
    return report


def _key_history(directory: Path, state: dict[str, Any]) -> list[str]:
    """The key history uploads carry, scanning only what was appended since last time.

    The state keeps the lines found and how far they were looked for (segment, bytes),
    so a large journal is not read again on every shipment.
    """
    lines: list[str] = list(state.get("key_history") or [])
    mark = state.get("history_scanned") or [0, 0]
    segments = list_segments(directory)
    if not segments or segments[0][0] != 1:
        return lines
    for index, path in segments:
        if index < mark[0]:
            continue
        offset = mark[1] if index == mark[0] else 0
        with open(path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                if (index == 1 and offset == 0 and not lines) or b'"kind":"key-rotated"' in raw:
                    lines.append(raw[:-1].decode("utf-8"))
                offset += len(raw)
        mark = [index, offset]
    state["key_history"], state["history_scanned"] = lines, mark
    return lines


def _next_batch(
    directory: Path, after: int, max_entries: int, max_bytes: int
) -> list[tuple[int, str]]:
    batch: list[tuple[int, str]] = []
    size = 0
    for seq, line in pending_lines(directory, after):
        if batch and (len(batch) >= max_entries or size + len(line) > max_bytes):
            break
        batch.append((seq, line))
        size += len(line) + 1
    return batch


def _post(
    client: httpx.Client, url: str, upload: dict[str, Any], state: dict[str, Any], path: Path
) -> dict[str, Any]:
    state["last_attempt"] = _now()
    try:
        response = client.post(url, json=upload)
    except httpx.HTTPError as exc:
        state["last_error"] = f"unreachable: {exc}"
        _save_state(path, state)
        raise CollectorUnreachable(
            f"the collector at {url} is unreachable ({exc}); entries after seq "
            f"{state.get('acked_seq', -1)} stay queued in the journal and go with the next try"
        ) from exc
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        answer = {"error": response.text[:200]}
    if response.status_code == 200:
        return answer
    message = str(answer.get("error", f"HTTP {response.status_code}"))
    state["last_error"] = f"{response.status_code}: {message}"
    _save_state(path, state)
    if response.status_code >= 500 or response.status_code == 429:
        raise CollectorUnreachable(f"the collector asked to retry later: {message}")
    raise UploadRefused(response.status_code, f"the collector refused the upload: {message}")


def _now() -> str:
    stamp: str = format_time(datetime.now(UTC))
    return stamp


#: ``() -> (collector URL or None, minutes, PEM CA certificates or None)``
Target = Callable[[], tuple[str | None, float, str | None]]


class Shipper:
    """Ships inside ``onbox serve``: at start, when a segment is sealed, and every ``minutes``.

    ``target()`` is asked before each shipment for ``(collector URL, minutes)``, so the
    URL always comes from the signed policy in force (``[audit] collector_url``); with
    no URL nothing is sent. A new segment (the old one sealed: a new day, or the size
    limit) is noticed within ``poll_seconds``. Failures are logged and retried later.
    """

    def __init__(
        self,
        journal: Journal,
        target: Target,
        state_path: Path,
        *,
        poll_seconds: float = 10.0,
    ) -> None:
        self._journal = journal
        self._target = target
        self._state_path = state_path
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onbox-journal-ship", daemon=True)
        self.last_error: str | None = None
        self.shipments = 0
        # One client while the policy's CA stays the same: a new one loads the trust store
        # again (about 40 ms of CPU, ten times the shipment) and opens a new connection.
        self._client: httpx.Client | None = None
        self._client_ca: str | None = None

    def start(self) -> None:
        """Begin shipping (the first shipment starts now)."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the shipment in flight, if any (waits at most ``timeout``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._drop_client()

    def _run(self) -> None:
        sealed, due = -1, 0.0
        while not self._stop.is_set():
            url, minutes, ca = self._target()
            segments = len(list_segments(self._journal.path))
            if url and (time.monotonic() >= due or segments != sealed):
                self._ship_once(url, ca)
                sealed, due = segments, time.monotonic() + max(minutes, 0.001) * 60
            self._stop.wait(min(self._poll, max(minutes, 0.001) * 60))

    def _ship_once(self, url: str, ca: str | None) -> None:
        try:
            report = ship(self._journal, url, self._state_path, client=self._client_for(ca))
            self.last_error = None
            logger.info("shipped %d entries to %s (seq %d)", report.sent, url, report.acked_seq)
        except (ShipError, JournalError, OSError, ssl.SSLError) as exc:
            self.last_error = str(exc)
            logger.warning("journal shipping: %s", exc)
            self._drop_client()  # the next try starts from a fresh connection
        self.shipments += 1

    def _client_for(self, ca: str | None) -> httpx.Client:
        """The HTTP client trusting the policy's CA certificates, else the system store."""
        if self._client is None or ca != self._client_ca:
            self._drop_client()
            verify = ssl.create_default_context(cadata=ca) if ca else True
            self._client, self._client_ca = httpx.Client(timeout=30, verify=verify), ca
        return self._client

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
