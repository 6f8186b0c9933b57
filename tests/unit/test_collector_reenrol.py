"""A reinstalled workstation: refused under its new root key until an admin re-enrols it.

Real signed journals on SQLite and a real PostgreSQL; then the same story end to end:
a real ``onbox collector serve``, ``onbox journal ship --now`` and ``onbox collector
enrol --new-key``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from onbox.collector import Enrolment, EntryQuery, Store, UploadRejected, find_entries, ingest
from onbox.collector.epochs import ReEnrolRefused, re_enrol
from onbox.collector.query import list_alerts, list_devices
from onbox.server.cli import main
from tests.support.collector import running_collector
from tests.support.postgres import postgres_cluster, reset
from tests.unit.test_collector_ingest import Workstation


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    yield from postgres_cluster()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'collector.db'}"
    else:
        url = request.getfixturevalue("postgres")
        reset(url)
    opened = Store(url)
    yield opened
    opened.close()


def _refusal(store: Store, raw: bytes, enrolment: Enrolment) -> str:
    with pytest.raises(UploadRejected) as caught:
        ingest(store, raw, enrolment)
    assert caught.value.status == 403, caught.value
    return str(caught.value)


def _lines(store: Store, device: str) -> list[str]:
    with store.read() as tx:
        rows = tx.fetchall("SELECT line FROM entries WHERE device = ? ORDER BY seq", (device,))
    return [str(r[0]) for r in rows]


def test_reinstalled_workstation_is_refused_until_re_enrolled_then_continues(
    store: Store, tmp_path: Path
) -> None:
    old = Workstation(tmp_path / "before")
    old.egress(6)
    approved = Enrolment([old.device])
    assert ingest(store, old.upload(), approved).stored == old.head() + 1
    before = _lines(store, old.device)

    # reinstalled: the key directory is gone, the new journal has a new root key
    new = Workstation(tmp_path / "after")
    new.egress(3)
    why = _refusal(store, new.upload(), approved)
    assert f"--new-key {new.device}" in why
    assert any(
        a["kind"] == "unknown-device" and a["device"] == new.device for a in list_alerts(store)
    )

    done = re_enrol(store, old.device, new.device, admin="sec-alice", reason="disk replaced")
    assert (done.epoch, done.workstation, done.old_head_seq) == (2, old.device, old.head())
    assert ingest(store, new.upload(), approved).stored == new.head() + 1

    # nothing stored under the old key was lost or rewritten
    assert _lines(store, old.device) == before
    # the admin's decision is on record (and settled the new key's refusal)
    every = list_alerts(store, open_only=False)
    record = next(a for a in every if a["kind"] == "re-enrolled")
    assert record["device"] == old.device and record["resolved"] is not None
    assert new.device in record["detail"] and "sec-alice" in record["detail"]
    assert "disk replaced" in record["detail"]
    assert not [a for a in list_alerts(store) if a["kind"] == "unknown-device"]
    devices = {d["device"]: d for d in list_devices(store)}
    assert devices[old.device]["status"] == "retired"
    assert devices[old.device]["epoch"]["replaced_by"] == new.device
    assert devices[new.device]["status"] == "enrolled"
    assert devices[new.device]["epoch"] == {
        "workstation": old.device,
        "epoch": 2,
        "replaces": old.device,
        "replaced_by": None,
    }
    # either root key finds the whole workstation
    for key in (old.device, new.device):
        found = find_entries(store, EntryQuery(device=key, kind="egress", limit=100))
        assert sorted({f["device"] for f in found}) == sorted({old.device, new.device})
        assert len(found) == 9

    # the old key is retired: whoever still holds it is refused, and alerted on
    head = old.head()
    old.egress(1)
    why = _refusal(store, old.upload(after=head), approved)
    assert f"re-enrolled under root key {new.device}" in why
    assert any(a["kind"] == "retired-key" and a["device"] == old.device for a in list_alerts(store))
    assert _lines(store, old.device) == before


def test_re_enrolment_refuses_what_does_not_fit(store: Store, tmp_path: Path) -> None:
    first, second, third = (Workstation(tmp_path / n) for n in ("one", "two", "three"))
    ingest(store, first.upload(), Enrolment([first.device]))
    with pytest.raises(ValueError, match="not a device fingerprint"):
        re_enrol(store, first.device, "laptop-7")
    with pytest.raises(ValueError, match="own root key"):
        re_enrol(store, first.device, first.device)
    with pytest.raises(ReEnrolRefused, match="unknown to the collector"):
        re_enrol(store, second.device, third.device)
    re_enrol(store, first.device, second.device)
    with pytest.raises(ReEnrolRefused, match=f"already re-enrolled as {second.device}"):
        re_enrol(store, first.device, third.device)
    with pytest.raises(ReEnrolRefused, match="already belongs"):
        re_enrol(store, second.device, first.device)  # back to a retired key
    # the chain goes on: a second reinstall is epoch 3 of the same workstation
    assert re_enrol(store, second.device, third.device).epoch == 3
    assert [d["status"] for d in list_devices(store) if d["device"] == first.device] == ["retired"]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(base URL, database URL)`` of a real collector on loopback (SQLite)."""
    db = f"sqlite:///{tmp_path / 'collector.db'}"
    with running_collector(db, tmp_path / "collector") as running:
        yield running.url, db


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def test_cli_re_enrols_a_reinstalled_workstation_over_http(
    collector: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, db = collector
    from onbox.audit import open_journal

    def install(name: str) -> str:
        monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / name / "data"))
        monkeypatch.setenv("ONBOX_JOURNAL_DIR", str(tmp_path / name / "journal"))
        with open_journal() as journal:
            journal.append("egress", {"destination": "cloud", "label": "public"}, durable=True)
            return str(journal.device_fingerprint)

    old = install("first-install")
    assert _cli(capsys, ["collector", "enrol", "--db", db, old])[0] == 0
    assert _cli(capsys, ["journal", "ship", "--now", "--collector", url])[0] == 0

    new = install("reinstalled")
    code, out = _cli(capsys, ["journal", "ship", "--now", "--collector", url])
    assert code == 1 and "not enrolled" in out and f"--new-key {new}" in out

    code, out = _cli(capsys, ["collector", "enrol", "--db", db, old, "--new-key", "nope"])
    assert code == 2 and "not a device fingerprint" in out
    code, out = _cli(
        capsys, ["collector", "enrol", "--db", db, old, "--new-key", new, "--reason", "reimaged"]
    )
    assert code == 0 and f"re-enrolled under root key {new} (epoch 2)" in out
    code, out = _cli(capsys, ["journal", "ship", "--now", "--collector", url, "--json"])
    assert code == 0, out

    found = httpx.get(url + "/v1/entries", params={"device": old, "kind": "egress"}).json()
    assert sorted(f["device"] for f in found) == sorted([old, new])
    alerts = httpx.get(url + "/v1/alerts", params={"all": "1"}).json()
    assert [json.dumps(a) for a in alerts if a["kind"] == "re-enrolled"]
