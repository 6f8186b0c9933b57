"""The collector's ingest on SQLite and on a real PostgreSQL, with real signed journals.

Each test runs once per store (``sqlite`` and ``postgresql``; the latter skips with the
reason when PostgreSQL is not installed). Uploads are built the way ``onbox journal
ship`` builds them, from journals written through ``onbox.audit.open_journal``.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import open_journal
from onbox.audit.bundle import key_history_lines
from onbox.audit.ship import pending_lines
from onbox.audit.upload import build_upload
from onbox.collector import Enrolment, EntryQuery, Store, UploadRejected, find_entries, ingest
from onbox.collector.query import egress_summary, enrol, list_alerts, list_devices
from tests.support.postgres import postgres_cluster, reset

DAY0 = datetime(2026, 11, 20, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    yield from postgres_cluster()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collector.db'}"
    conninfo: str = request.getfixturevalue("postgres")
    reset(conninfo)
    return conninfo


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store(db_url)
    yield opened
    opened.close()


class Workstation:
    """A device journal with a hand-driven clock, and uploads built from it."""

    def __init__(self, root: Path) -> None:
        self.root, self.now = root, DAY0
        self.dir, self.keys = root / "journal", root / "keys"
        with self.open() as journal:
            self.device = str(journal.device_fingerprint)

    def open(self) -> Any:
        return open_journal(self.dir, device_key_dir=self.keys, clock=lambda: self.now)

    def egress(self, count: int, **fields: Any) -> None:
        with self.open() as journal:
            for i in range(count):
                body = {
                    "destination": "cloud",
                    "kind": "openai",
                    "label": "public",
                    "repo": "acme/web",
                    "path": f"src/f{i}.py",
                    "bytes": 100,
                    "actor": {"osUser": "ann", "host": "ws1", "gitEmail": "ann@acme.test"},
                }
                body.update(fields)
                journal.append("egress", body, durable=True)
                self.now += timedelta(minutes=1)

    def upload(self, after: int = -1, count: int | None = None) -> bytes:
        lines = list(pending_lines(self.dir, after))[:count]
        with self.open() as journal:
            first = lines[0][0] if lines else None
            built = build_upload(
                journal, [line for _, line in lines], first, key_history_lines(self.dir)
            )
        return json.dumps(built).encode()

    def head(self) -> int:
        return max(seq for seq, _ in pending_lines(self.dir, -1))


@pytest.fixture
def ws(tmp_path: Path) -> Workstation:
    return Workstation(tmp_path / "ws")


def _count(store: Store, device: str) -> int:
    with store.read() as tx:
        row = tx.fetchone("SELECT COUNT(*) FROM entries WHERE device = ?", (device,))
    assert row is not None
    return int(row[0])


def _alerts(store: Store, kind: str) -> list[dict[str, Any]]:
    return [a for a in list_alerts(store) if a["kind"] == kind]


def _refused(status: int, store: Store, raw: bytes, enrolment: Enrolment) -> str:
    with pytest.raises(UploadRejected) as caught:
        ingest(store, raw, enrolment)
    assert caught.value.status == status, caught.value
    return str(caught.value)


def test_upload_is_verified_stored_once_and_replays_store_nothing(
    store: Store, ws: Workstation
) -> None:
    ws.egress(20)
    allowed = Enrolment([ws.device])
    raw = ws.upload()
    first = ingest(store, raw, allowed)
    assert first.stored == ws.head() + 1 and first.acked_seq == ws.head()
    assert not first.alerts
    again = ingest(store, raw, allowed)
    assert (again.stored, again.duplicates) == (0, ws.head() + 1)
    assert _count(store, ws.device) == ws.head() + 1
    (device,) = list_devices(store)
    assert device["chain"] == "ok" and device["head_seq"] == ws.head()


def test_concurrent_replicas_store_each_entry_once(
    db_url: str, store: Store, ws: Workstation
) -> None:
    ws.egress(40)
    raws = [ws.upload(count=15), ws.upload(), ws.upload(after=14)]
    replicas = [Store(db_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(replica: Store) -> None:
        try:
            for raw in raws:
                ingest(replica, raw, Enrolment([ws.device]))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.close()
    assert not errors, errors
    assert _count(store, ws.device) == ws.head() + 1
    assert not list_alerts(store)
    # the dashboard's rollups count each entry once too, replays and races notwithstanding
    (pair,) = egress_summary(store, days=100_000)["by_label_destination"]
    assert (pair["requests"], pair["bytes"]) == (40, 4000)


def test_unenrolled_device_is_refused_and_alerted_then_enrolled(
    store: Store, ws: Workstation
) -> None:
    ws.egress(3)
    what = _refused(403, store, ws.upload(), Enrolment())
    assert f"onbox collector enrol {ws.device}" in what
    (alert,) = _alerts(store, "unknown-device")
    assert alert["device"] == ws.device and _count(store, ws.device) == 0
    _refused(403, store, ws.upload(), Enrolment())  # replayed: one alert, not two
    assert len(_alerts(store, "unknown-device")) == 1
    assert enrol(store, ws.device, "ws1")
    assert ingest(store, ws.upload(), Enrolment()).stored == ws.head() + 1
    assert not _alerts(store, "unknown-device")


def test_trust_on_first_use_admits_and_alerts(store: Store, ws: Workstation) -> None:
    ws.egress(3)
    assert ingest(store, ws.upload(), Enrolment(trust_on_first_use=True)).stored > 0
    (alert,) = _alerts(store, "unknown-device")
    assert "first use" in alert["detail"]


def test_malformed_truncated_and_altered_uploads_are_refused(store: Store, ws: Workstation) -> None:
    ws.egress(5)
    allowed = Enrolment([ws.device])
    raw = ws.upload()
    assert "not JSON" in _refused(400, store, raw[: len(raw) // 2], allowed)
    _refused(400, store, b"[1, 2, 3]", allowed)
    _refused(400, store, b'{"type": "onbox-journal-upload", "v": 1}', allowed)
    upload = json.loads(raw)
    dropped = dict(upload, entries=upload["entries"][:2] + upload["entries"][3:])
    assert "altered" in _refused(400, store, json.dumps(dropped).encode(), allowed)
    changed = dict(upload, entries=[upload["entries"][0].replace("acme", "ACME")])
    _refused(400, store, json.dumps(changed).encode(), allowed)
    oversized = json.dumps(dict(upload, pad="x" * (17 * 1024 * 1024))).encode()
    _refused(413, store, oversized, allowed)
    assert _count(store, ws.device) == 0


def test_upload_signed_by_another_key_is_refused(
    store: Store, ws: Workstation, tmp_path: Path
) -> None:
    ws.egress(5)
    intruder = Workstation(tmp_path / "intruder")
    upload = json.loads(ws.upload())
    upload["checkpoint"] = json.loads(intruder.upload())["checkpoint"]
    upload["checkpoint"]["device"] = ws.device  # the signature no longer covers it
    _refused(401, store, json.dumps(upload).encode(), Enrolment([ws.device]))
    # an intruder's whole, self-consistent upload is simply another, unenrolled device
    _refused(403, store, intruder.upload(), Enrolment([ws.device]))
    assert _count(store, ws.device) == 0


def test_entry_edited_on_the_device_is_refused_as_tampered(store: Store, ws: Workstation) -> None:
    ws.egress(5)
    segment = sorted(ws.dir.glob("segment-*.jsonl"))[-1]
    segment.write_bytes(segment.read_bytes().replace(b'"label":"public"', b'"label":"PUBLIC"', 1))
    what = _refused(422, store, ws.upload(), Enrolment([ws.device]))
    assert "hash" in what
    assert _alerts(store, "tampered") and _count(store, ws.device) == 0


def test_rewritten_history_is_refused_and_alerted(store: Store, ws: Workstation) -> None:
    ws.egress(5)
    backup = ws.root.parent / "backup"
    shutil.copytree(ws.root, backup)
    ws.egress(5)
    allowed = Enrolment([ws.device])
    ingest(store, ws.upload(), allowed)
    held = _count(store, ws.device)
    shutil.rmtree(ws.root)
    shutil.copytree(backup, ws.root)  # the older copy, journal and keys, then new entries
    ws.egress(8, label="internal")
    what = _refused(409, store, ws.upload(), allowed)
    assert "nothing stored" in what
    kinds = {a["kind"] for a in list_alerts(store)}
    assert kinds & {"fork", "rewritten"}, kinds
    assert _count(store, ws.device) == held
    (device,) = list_devices(store)
    assert device["chain"] != "ok"


def test_truncation_below_an_earlier_checkpoint_is_alerted(store: Store, ws: Workstation) -> None:
    ws.egress(10)
    allowed = Enrolment([ws.device])
    ingest(store, ws.upload(), allowed)
    head = ws.head()
    segment = sorted(ws.dir.glob("segment-*.jsonl"))[-1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-3]))
    ingest(store, ws.upload(after=head), allowed)  # a heartbeat from the cut journal
    (alert,) = _alerts(store, "truncation")
    assert (alert["first_seq"], alert["last_seq"]) == (head - 2, head)


def test_gap_is_alerted_then_closed_when_the_entries_arrive(store: Store, ws: Workstation) -> None:
    ws.egress(30)
    allowed = Enrolment([ws.device])
    ingest(store, ws.upload(count=10), allowed)
    later = ingest(store, ws.upload(after=19), allowed)
    assert later.stored == ws.head() - 19
    (gap,) = _alerts(store, "gap")
    assert (gap["first_seq"], gap["last_seq"]) == (10, 19)
    assert list_devices(store)[0]["chain"] == "gap"
    ingest(store, ws.upload(after=9, count=10), allowed)
    assert not _alerts(store, "gap")
    assert _count(store, ws.device) == ws.head() + 1


def test_rotated_keys_are_followed(store: Store, ws: Workstation) -> None:
    for _ in range(3):  # a new day: a new segment, a key rotation co-signed by the old key
        ws.egress(4)
        ws.now += timedelta(days=1)
    with ws.open() as journal:
        journal.rotate_key("test")
    ws.egress(2)
    result = ingest(store, ws.upload(), Enrolment([ws.device]))
    assert result.stored == ws.head() + 1
    with store.read() as tx:
        keys = tx.fetchall("SELECT fingerprint FROM device_keys WHERE device = ?", (ws.device,))
    assert len(keys) >= 4


def test_query_filters(store: Store, ws: Workstation, tmp_path: Path) -> None:
    ws.egress(3)
    ws.egress(2, label="internal", destination="corp-vllm", repo="acme/pay", path="pay.py")
    other = Workstation(tmp_path / "other")
    other.egress(2, actor={"osUser": "bob", "host": "ws2", "gitEmail": "bob@acme.test"})
    allowed = Enrolment([ws.device, other.device])
    ingest(store, ws.upload(), allowed)
    ingest(store, other.upload(), allowed)

    def find(**kwargs: Any) -> list[dict[str, Any]]:
        kwargs.setdefault("limit", 1000)
        return find_entries(store, EntryQuery(**kwargs))

    assert len(find(kind="egress")) == 7
    assert {e["device"] for e in find(kind="egress", device=other.device)} == {other.device}
    assert len(find(label="internal")) == 2
    assert [e["path"] for e in find(destination="corp-vllm", repo="acme/pay")] == ["pay.py"] * 2
    assert len(find(user="bob@acme.test")) == 2 and len(find(user="ann")) == 5
    cutoff = DAY0 + timedelta(minutes=2, seconds=30)
    assert len(find(kind="egress", device=ws.device, until=cutoff)) == 3
    assert len(find(kind="egress", device=ws.device, since=cutoff)) == 2
    full = find(kind="egress", limit=1, with_line=True)[0]
    assert full["entry"]["hash"] == full["hash"] and "sig" in full["entry"]


def test_silent_device_is_alerted_until_a_heartbeat_arrives(store: Store, ws: Workstation) -> None:
    ws.egress(3)
    allowed = Enrolment([ws.device])
    ingest(store, ws.upload(), allowed)
    window = timedelta(minutes=30)
    assert not [a for a in list_alerts(store, silence=window) if a["kind"] == "silent"]
    with store.transaction() as tx:  # two hours without a word from the device
        tx.execute(
            "UPDATE devices SET last_seen = ? WHERE device = ?",
            ((datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), ws.device),
        )
    (silent,) = [a for a in list_alerts(store, silence=window) if a["kind"] == "silent"]
    assert silent["device"] == ws.device and "30 min" in silent["detail"]
    assert list_devices(store, silence=window)[0]["chain"] == "silent"
    heartbeat = ingest(store, ws.upload(after=ws.head()), allowed)  # no entries, signed
    assert heartbeat.stored == 0
    assert not [a for a in list_alerts(store, silence=window) if a["kind"] == "silent"]


def test_collector_imports_nothing_from_the_server() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, onbox.collector, onbox.collector.app, onbox.collector.siem; "
        "print(sorted(m for m in sys.modules if m.startswith('onbox.server')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
