"""One replica forwards to the SIEM: two real forwarders on one real PostgreSQL (and SQLite).

Each forwarder has its own database connections, as replicas on separate hosts would;
both append to the same file sink, so a record forwarded twice shows as a repeated
``event.id``. The leader is then stopped (cleanly, and by killing its lock session the
way a crashed host loses it) and the standby must take over without repeats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from onbox.collector import Enrolment, Store, ingest
from onbox.collector.leadership import PG_LOCK_KEYS
from onbox.collector.siem import FileSink, Forwarder
from tests.support.collector import CollectorProcess
from tests.support.postgres import postgres_cluster, reset
from tests.unit.test_collector_ingest import Workstation


def later() -> datetime:
    """Past the forwarder's lag, from now (not from import: a slow suite outlives that)."""
    return datetime.now(UTC) + timedelta(minutes=5)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    yield from postgres_cluster()


def _ids(sink: Path) -> list[str]:
    return [json.loads(line)["event"]["id"] for line in sink.read_text().splitlines()]


def _passes(*forwarders: Forwarder, rounds: int = 3) -> list[int]:
    """Interleaved passes; what each forwarder delivered in all."""
    sent = [0] * len(forwarders)
    for _ in range(rounds):
        for i, forwarder in enumerate(forwarders):
            sent[i] += forwarder.forward_once(now=later())
    return sent


def _leader_backend(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 2",
            PG_LOCK_KEYS,
        ).fetchone()
    assert row is not None, "nobody holds the forwarding lead"
    return int(row[0])


def test_two_forwarders_on_postgresql_send_each_record_once_and_take_over(
    postgres: str, tmp_path: Path
) -> None:
    reset(postgres)
    ws = Workstation(tmp_path / "ws")
    ws.egress(30)
    store = Store(postgres)
    ingest(store, ws.upload(), Enrolment([ws.device]))
    sink = tmp_path / "siem.jsonl"
    stores = [Store(postgres) for _ in range(3)]  # one connection each, as replicas have
    first, second, third = (Forwarder(s, [FileSink(sink)]) for s in stores)
    try:
        sent = _passes(first, second)
        assert sent == [30, 0]  # the first to ask leads; the other stands by
        assert len(_ids(sink)) == 30 == len(set(_ids(sink)))

        # the leader stops cleanly: the standby takes over from the shared cursor
        first.stop()
        head = ws.head()
        ws.egress(5)
        ingest(store, ws.upload(after=head), Enrolment([ws.device]))
        assert _passes(second, third) == [5, 0]

        # the leader's host dies: PostgreSQL ends its session, and its lock with it
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (_leader_backend(postgres),))
        head = ws.head()
        ws.egress(7)
        ingest(store, ws.upload(after=head), Enrolment([ws.device]))
        assert _passes(second, third) == [0, 7]  # the old leader notices, and stands by

        ids = _ids(sink)
        assert len(ids) == 42 == len(set(ids))
        seqs = [json.loads(line)["onbox"]["seq"] for line in sink.read_text().splitlines()]
        assert sorted(seqs) == seqs and len(set(seqs)) == 42
    finally:
        for forwarder in (first, second, third):
            forwarder.stop()
        for opened in (store, *stores):
            opened.close()


def test_two_forwarders_on_one_sqlite_file_send_each_record_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    ws = Workstation(tmp_path / "ws")
    ws.egress(12)
    store = Store(url)
    ingest(store, ws.upload(), Enrolment([ws.device]))
    sink = tmp_path / "siem.jsonl"
    stores = [Store(url), Store(url)]
    first, second = (Forwarder(s, [FileSink(sink)]) for s in stores)
    try:
        assert _passes(first, second) == [12, 0]
        first.stop()  # the lock file is let go: the standby leads
        head = ws.head()
        ws.egress(3)
        ingest(store, ws.upload(after=head), Enrolment([ws.device]))
        assert _passes(second) == [3]
        assert len(_ids(sink)) == 15 == len(set(_ids(sink)))
    finally:
        first.stop()
        second.stop()
        for opened in (store, *stores):
            opened.close()


def _wait_for_lines(sink: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while True:
        lines = sink.read_text().splitlines() if sink.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)  # the forwarders pass every 5 s; a file has no notification


def _refused_stranger(url: str, root: Path) -> str:
    stranger = Workstation(root)
    answer = httpx.post(url + "/v1/upload", content=stranger.upload(), timeout=30)
    assert answer.status_code == 403  # an unknown-device alert for the SIEM
    return stranger.device


def test_collector_replicas_forward_once_and_a_standby_takes_over_a_killed_leader(
    postgres: str, tmp_path: Path
) -> None:
    reset(postgres)
    sink = tmp_path / "siem.jsonl"
    replicas = [
        CollectorProcess(postgres, tmp_path / name, "--siem-file", str(sink))
        for name in ("r1", "r2")
    ]
    try:
        devices = [_refused_stranger(replicas[i % 2].url, tmp_path / f"s{i}") for i in range(3)]
        assert len(_wait_for_lines(sink, 3)) == 3
        with psycopg.connect(postgres, autocommit=True) as conn:
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
                PG_LOCK_KEYS,
            ).fetchone()
        assert row is not None and str(row[0]).startswith("onbox-siem-lead ")
        leader = next(r for r in replicas if r.process.pid == int(str(row[0]).split()[1]))
        survivor = next(r for r in replicas if r is not leader)
        leader.kill()  # SIGKILL: no goodbye; PostgreSQL ends its session and its lock
        devices += [_refused_stranger(survivor.url, tmp_path / f"t{i}") for i in range(2)]
        lines = _wait_for_lines(sink, 5)
        time.sleep(6)  # one more forwarding pass: nothing may come twice
        lines = sink.read_text().splitlines()
    finally:
        for replica in replicas:
            replica.stop()
    records = [json.loads(line) for line in lines]
    assert sorted(r["host"]["id"] for r in records) == sorted(devices)
    assert len({r["event"]["id"] for r in records}) == 5
