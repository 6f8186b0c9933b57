"""Faults around a real collector: SIGKILL mid-ingest, PostgreSQL restarted under load.

Nothing acknowledged may be lost and nothing stored twice; shippers see a clear error,
keep their queue (the journal) and drain it once the collector is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onbox.audit import open_journal
from onbox.audit.errors import CollectorUnreachable
from onbox.audit.ship import ShipReport, load_state, pending_lines, ship
from onbox.collector import Store
from onbox.collector.query import enrol
from tests.support.collector import CollectorProcess
from tests.support.postgres import postgres_cluster, reset, restart


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    yield from postgres_cluster()


def _journal(root: Path, entries: int) -> tuple[Path, Path, str]:
    directory, keys = root / "journal", root / "keys"
    with open_journal(directory, device_key_dir=keys, commit_interval=0.05) as journal:
        for i in range(entries):
            journal.append("egress", {"destination": "cloud", "label": "public", "n": i})
        return directory, keys, str(journal.device_fingerprint)


def _enrol(db: str, device: str) -> None:
    store = Store(db)
    try:
        enrol(store, device)
    finally:
        store.close()


def _stored(db: str, device: str) -> tuple[int, int]:
    store = Store(db)
    try:
        with store.read() as tx:
            row = tx.fetchone(
                "SELECT COUNT(*), COUNT(DISTINCT seq) FROM entries WHERE device = ?", (device,)
            )
    finally:
        store.close()
    assert row is not None
    return int(row[0]), int(row[1])


class Shipping(threading.Thread):
    """Ships a journal in small batches until done or the collector goes away."""

    def __init__(self, directory: Path, keys: Path, url: str, state: Path) -> None:
        super().__init__(daemon=True)
        self.args_ = (directory, keys, url, state)
        self.error: BaseException | None = None
        self.report: ShipReport | None = None

    def run(self) -> None:
        directory, keys, url, state = self.args_
        try:
            with open_journal(directory, device_key_dir=keys) as journal:
                self.report = ship(journal, url, state, batch_entries=50)
        except BaseException as exc:  # examined by the test
            self.error = exc


def _wait_for_ack(state: Path, at_least: int, shipping: Shipping) -> None:
    deadline = time.monotonic() + 120
    while load_state(state).get("acked_seq", -1) < at_least:
        assert shipping.is_alive(), shipping.error
        assert time.monotonic() < deadline, "no acknowledgement came"
        time.sleep(0.02)  # watching a file another thread writes


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_collector_killed_mid_ingest_keeps_every_acknowledged_entry_once(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "sqlite":
        db = f"sqlite:///{tmp_path / 'collector.db'}"
    else:
        db = request.getfixturevalue("postgres")
        reset(db)
    directory, keys, device = _journal(tmp_path / "ws", 3000)
    _enrol(db, device)
    state = tmp_path / "ws" / "ship-state.json"
    collector = CollectorProcess(db, tmp_path / "c1")
    shipping = Shipping(directory, keys, collector.url, state)
    shipping.start()
    _wait_for_ack(state, 500, shipping)
    collector.kill()
    shipping.join(60)
    assert isinstance(shipping.error, CollectorUnreachable), shipping.error
    acked = load_state(state)["acked_seq"]
    count, distinct = _stored(db, device)
    assert count == distinct and count >= acked + 1  # acknowledged entries survived the kill
    again = CollectorProcess(db, tmp_path / "c2")
    try:
        with open_journal(directory, device_key_dir=keys) as journal:
            report = ship(journal, again.url, state, batch_entries=500)
        head = max(seq for seq, _ in pending_lines(directory, -1))
        assert report.acked_seq == head
        assert _stored(db, device) == (head + 1, head + 1)
        (row,) = [d for d in httpx.get(again.url + "/v1/devices").json() if d["device"] == device]
        assert row["chain"] == "ok"
    finally:
        again.stop()


def test_postgresql_restarted_under_load_loses_nothing(tmp_path: Path, postgres: str) -> None:
    reset(postgres)
    directory, keys, device = _journal(tmp_path / "ws", 3000)
    _enrol(postgres, device)
    state = tmp_path / "ws" / "ship-state.json"
    collector = CollectorProcess(postgres, tmp_path / "c")
    errors: list[str] = []
    try:
        shipping = Shipping(directory, keys, collector.url, state)
        shipping.start()
        _wait_for_ack(state, 300, shipping)
        restart(postgres)
        shipping.join(120)
        if shipping.error is not None:  # the restart cut an ingest: 503, queue kept
            assert isinstance(shipping.error, CollectorUnreachable), shipping.error
            errors.append(str(shipping.error))
        report: Any = None
        deadline = time.monotonic() + 60
        while report is None:  # a shipper's retries, as its timer would make them
            try:
                with open_journal(directory, device_key_dir=keys) as journal:
                    report = ship(journal, collector.url, state, batch_entries=500)
            except CollectorUnreachable as exc:
                errors.append(str(exc))
                assert time.monotonic() < deadline, errors
                time.sleep(0.2)
        head = max(seq for seq, _ in pending_lines(directory, -1))
        assert report.acked_seq == head
        assert _stored(postgres, device) == (head + 1, head + 1)
        assert all("retry" in e or "unreachable" in e for e in errors), errors
    finally:
        collector.stop()


def test_two_replicas_on_one_postgresql_store_a_device_once(tmp_path: Path, postgres: str) -> None:
    reset(postgres)
    directory, keys, device = _journal(tmp_path / "ws", 2000)
    _enrol(postgres, device)
    first = CollectorProcess(postgres, tmp_path / "r1")
    second = CollectorProcess(postgres, tmp_path / "r2", "--workers", "2")
    try:
        # the same journal shipped twice at once, each copy to another replica
        shippers = [
            Shipping(directory, keys, replica.url, tmp_path / f"state-{i}.json")
            for i, replica in enumerate((first, second))
        ]
        for shipper in shippers:
            shipper.start()
        for shipper in shippers:
            shipper.join(120)
            assert shipper.error is None, shipper.error
        head = max(seq for seq, _ in pending_lines(directory, -1))
        assert _stored(postgres, device) == (head + 1, head + 1)
        reports = [s.report for s in shippers]
        assert sum(r.stored for r in reports if r) == head + 1  # each entry stored by one
        alerts = httpx.get(first.url + "/v1/alerts").json()
        assert not [a for a in alerts if a["device"] == device], alerts
    finally:
        first.stop()
        second.stop()
