"""Entries checked in worker processes are checked exactly as in one pass.

Real journals, real signatures, a real worker pool (two spawned processes, runs of a few
entries each so that every kind of fault lands at a run's edge as well as inside one).
For every tampering, the parallel check must refuse with the same message as the
in-process check, naming the same first bad entry; for a good upload, return the same
rows. Then ingest through the pool on SQLite: stored once, replays store nothing.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from onbox.audit import open_journal
from onbox.audit.bundle import key_history_lines
from onbox.audit.ship import pending_lines
from onbox.audit.upload import build_upload
from onbox.collector import Enrolment, Store, UploadRejected, ingest
from onbox.collector.chain import KeySpan, check_entries, key_timeline
from onbox.collector.query import enrol
from onbox.collector.store import EntryRow
from onbox.collector.verifier import EntryVerifier
from tests.support.collector import CollectorProcess

DAY0 = datetime(2026, 11, 20, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def verifier() -> Iterator[EntryVerifier]:
    checker = EntryVerifier(2, min_parallel=1)
    yield checker
    checker.close()


def _append(root: Path, count: int, label: str, rotate_at: int = -1) -> str:
    now = [DAY0]
    with open_journal(root / "journal", device_key_dir=root / "keys", clock=lambda: now[0]) as j:
        for i in range(count):
            j.append("egress", {"destination": "cloud", "label": label, "n": i})
            now[0] += timedelta(minutes=1)
            if i == rotate_at:  # a co-signed key rotation in the middle of the upload
                j.rotate_key("test")
        return str(j.device_fingerprint)


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A journal and a fork of it: the same device, keys and first 26 entries, then each
    its own 8 (validly signed: a break in the chain, not in any one entry)."""
    root = tmp_path_factory.mktemp("ws")
    device = _append(root / "a", 24, "public", rotate_at=11)
    shutil.copytree(root / "a", root / "b")
    _append(root / "a", 8, "public")
    _append(root / "b", 8, "internal")
    return root / "a" / "journal", root / "b" / "journal", device


@pytest.fixture(scope="module")
def journal(journals: tuple[Path, Path, str]) -> tuple[Path, Path, str]:
    directory, _, device = journals
    return directory, directory.parent / "keys", device


def _upload(journal: tuple[Path, Path, str]) -> tuple[str, list[str], int, list[KeySpan]]:
    directory, _, device = journal
    lines = list(pending_lines(directory, -1))
    spans = key_timeline(device, key_history_lines(directory))
    return device, [line for _, line in lines], lines[0][0], spans


def _outcome(check: object) -> list[EntryRow] | str:
    try:
        rows = check()  # type: ignore[operator]
    except UploadRejected as exc:
        assert exc.status == 422
        return str(exc)
    assert isinstance(rows, list)
    return rows


def _bad_signature(line: str) -> str:
    entry = json.loads(line)
    sig = entry["sig"]
    return line.replace(sig, ("B" if sig[0] != "B" else "C") + sig[1:])


TAMPERINGS = {
    "edited body": lambda line: line.replace('"label":"public"', '"label":"PUBLIC"'),
    "bad signature": _bad_signature,
    "edited link": lambda line: line.replace(json.loads(line)["prev"], "f" * 64),
    "not json": lambda line: line[:-5],
    "extra space": lambda line: line.replace(",", ", ", 1),
}


def test_a_good_upload_gives_the_same_rows(
    journal: tuple[Path, Path, str], verifier: EntryVerifier
) -> None:
    device, lines, first, spans = _upload(journal)
    for runs in (2, 3, 7):
        verifier_runs = EntryVerifier(runs, min_parallel=1)
        try:
            assert verifier_runs.check(device, lines, first, spans) == check_entries(
                device, lines, first, spans
            )
        finally:
            verifier_runs.close()
    rows = verifier.check(device, lines, first, spans)
    assert [r.seq for r in rows] == list(range(first, first + len(lines)))
    assert all(r.prev == before.hash for before, r in itertools.pairwise(rows))


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_every_tampering_is_named_as_in_one_pass(
    journal: tuple[Path, Path, str], verifier: EntryVerifier, how: str
) -> None:
    device, lines, first, spans = _upload(journal)
    half = len(lines) // 2
    # the first entry of the second run, one inside a run, the last entry, and two at once
    for positions in ([half], [half + 3], [len(lines) - 1], [half + 2, 4]):
        tampered = list(lines)
        for i in positions:
            tampered[i] = TAMPERINGS[how](tampered[i])
        one_pass = _outcome(lambda t=tampered: check_entries(device, t, first, spans))
        parallel = _outcome(lambda t=tampered: verifier.check(device, t, first, spans))
        assert isinstance(one_pass, str), (how, positions)
        assert parallel == one_pass, (how, positions)
        assert f"entry {first + min(positions)}:" in parallel


def test_a_broken_chain_is_named_as_in_one_pass_also_between_runs(
    journals: tuple[Path, Path, str], verifier: EntryVerifier
) -> None:
    ours, forked, device = journals
    spans = key_timeline(device, key_history_lines(ours))
    mine = [line for _, line in pending_lines(ours, -1)]
    theirs = [line for _, line in pending_lines(forked, -1)]
    diverged = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
    spliced = mine[: diverged + 1] + theirs[diverged + 1 :]  # breaks at diverged + 1
    for start in (diverged - 2, diverged - 3):  # 2 runs: the break at a run's start, inside
        window = spliced[start : start + 6]
        one_pass = _outcome(lambda w=window, s=start: check_entries(device, w, s, spans))
        assert one_pass == f"entry {diverged + 1}: prev does not match the entry before it"
        assert _outcome(lambda w=window, s=start: verifier.check(device, w, s, spans)) == one_pass
    broken = list(spliced)
    broken[diverged + 1] = _bad_signature(broken[diverged + 1])  # the link is checked first
    window = broken[diverged - 2 : diverged + 4]
    one_pass = _outcome(lambda: check_entries(device, window, diverged - 2, spans))
    assert isinstance(one_pass, str) and "prev does not match" in one_pass
    assert _outcome(lambda: verifier.check(device, window, diverged - 2, spans)) == one_pass


def test_reordered_entries_are_refused_as_in_one_pass(
    journal: tuple[Path, Path, str], verifier: EntryVerifier
) -> None:
    device, lines, first, spans = _upload(journal)
    half = len(lines) // 2
    swapped = list(lines)
    swapped[half - 1], swapped[half] = swapped[half], swapped[half - 1]
    one_pass = _outcome(lambda: check_entries(device, swapped, first, spans))
    assert isinstance(one_pass, str) and "was due" in one_pass
    assert _outcome(lambda: verifier.check(device, swapped, first, spans)) == one_pass


def test_ingest_through_the_pool_stores_once(
    journal: tuple[Path, Path, str], verifier: EntryVerifier, tmp_path: Path
) -> None:
    directory, keys, device = journal
    lines = list(pending_lines(directory, -1))
    with open_journal(directory, device_key_dir=keys) as opened:
        built = build_upload(
            opened, [line for _, line in lines], lines[0][0], key_history_lines(directory)
        )
    raw = json.dumps(built).encode()
    store = Store(f"sqlite:///{tmp_path / 'collector.db'}")
    try:
        first = ingest(store, raw, Enrolment([device]), verifier)
        again = ingest(store, raw, Enrolment([device]), verifier)
        with store.read() as tx:
            row = tx.fetchone("SELECT COUNT(*), COUNT(DISTINCT seq) FROM entries")
    finally:
        store.close()
    assert (first.stored, first.duplicates) == (len(lines), 0)
    assert (again.stored, again.duplicates) == (0, len(lines))
    assert row == (len(lines), len(lines))


def test_a_pool_that_cannot_work_falls_back_to_checking_in_process(
    journal: tuple[Path, Path, str],
) -> None:
    device, lines, first, spans = _upload(journal)
    broken = EntryVerifier(2, min_parallel=1)
    pool = broken.start()
    assert pool is not None
    for process in list(pool._processes.values()):  # a worker killed (OOM, an operator)
        process.kill()
        process.join()
    try:
        assert broken.check(device, lines, first, spans) == check_entries(
            device, lines, first, spans
        )
        tampered = list(lines)
        tampered[3] = _bad_signature(tampered[3])
        with pytest.raises(UploadRejected, match=r"entry \d+: signature is invalid"):
            broken.check(device, tampered, first, spans)
    finally:
        broken.close()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_check_workers_end_with_a_killed_collector(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    device = _append(root, 300, "public")
    directory, lines = root / "journal", list(pending_lines(root / "journal", -1))
    with open_journal(directory, device_key_dir=root / "keys") as opened:
        built = build_upload(
            opened, [line for _, line in lines], lines[0][0], key_history_lines(directory)
        )
    db = f"sqlite:///{tmp_path / 'collector.db'}"
    store = Store(db)
    enrol(store, device)
    store.close()
    collector = CollectorProcess(db, tmp_path / "collector")
    try:
        answer = httpx.post(collector.url + "/v1/upload", json=built, timeout=120)
        assert answer.status_code == 200 and answer.json()["stored"] == len(lines)
        workers = _children(collector.process.pid)
        assert len(workers) >= 2  # the check workers (and multiprocessing's tracker)
    finally:
        collector.kill()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "check workers outlived the killed collector"
        time.sleep(0.2)  # polling for processes to exit: there is nothing to wait on
