"""Crash safety: writers killed with SIGKILL at random points, and torn tails recovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.audit import VerifyResult, iter_entries, open_journal, verify_journal

# Runs in a subprocess: imports once, then forks a writer per round and SIGKILLs it after a
# random delay. Each writer prints "seq hash" for every durable append, after it returns.
DRIVER = r"""
import json, os, random, signal, sys, time
from pathlib import Path
from onbox.audit import open_journal

journal_dir, key_dir, rounds, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
acked = []
failures = []
for r in range(rounds):
    read_fd, write_fd = os.pipe()
    delay = rng.uniform(0.0, 0.05)
    small = r % 2 == 0
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            j = open_journal(journal_dir, device_key_dir=key_dir,
                             segment_max_bytes=3000 if small else 1 << 20, forward_secure=small)
            i = 0
            while True:
                durable = i % 3 == 0
                rec = j.append("completion", {"round": r, "i": i}, durable=durable)
                if durable:
                    os.write(write_fd, f"{rec.seq} {rec.entry_hash}\n".encode())
                i += 1
        except BaseException as exc:  # report, do not mask: the parent fails the test
            os.write(write_fd, f"ERROR {type(exc).__name__}: {exc}\n".encode())
            os._exit(3)
    os.close(write_fd)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe.read().decode().splitlines():
            if line.startswith("ERROR"):
                failures.append(f"round {r}: {line}")
            elif line.endswith(tuple("0123456789abcdef")) and len(line.split()) == 2:
                seq, digest = line.split()
                acked.append([int(seq), digest])
print(json.dumps({"acked": acked, "failures": failures}))
"""


def _run_driver(tmp_path: Path, rounds: int, seed: int) -> dict[str, list[list[object]]]:
    env = {**os.environ, "ONBOX_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            DRIVER,
            str(tmp_path / "journal"),
            str(tmp_path / "keys"),
            str(rounds),
            str(seed),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=True,
    )
    result: dict[str, list[list[object]]] = json.loads(proc.stdout)
    return result


def test_kill_9_at_random_points_loses_no_durable_entry(tmp_path: Path) -> None:
    outcome = _run_driver(tmp_path, rounds=200, seed=5)
    assert outcome["failures"] == []
    acked = {int(seq): str(digest) for seq, digest in outcome["acked"]}  # type: ignore[call-overload]
    assert len(acked) > 100  # the writers did get durable entries acknowledged
    with open_journal(tmp_path / "journal", device_key_dir=tmp_path / "keys") as journal:
        journal.append("server-start", {"after": "crash test"}, durable=True)
    result = verify_journal(tmp_path / "journal", workers=1)
    assert result.ok, result.first_error
    assert len(result.keys) > 10  # epoch keys evolved across crashes
    on_disk = {e["seq"]: e["hash"] for e in iter_entries(tmp_path / "journal")}
    lost = {seq: digest for seq, digest in acked.items() if on_disk.get(seq) != digest}
    assert lost == {}
    # every evolved-away private key is gone; only the current one is left
    assert len(list((tmp_path / "keys").glob("*.key"))) == 1


def _torn_journal(tmp_path: Path) -> tuple[Path, int, bytes]:
    directory = tmp_path / "journal"
    with open_journal(directory, device_key_dir=tmp_path / "keys") as journal:
        for i in range(5):
            journal.append("completion", {"i": i})
        last = journal.head().seq
    path = directory / "segment-00000001.jsonl"
    torn = b'{"v":1,"seq":' + str(last + 1).encode() + b',"time":"2026-'
    with open(path, "ab") as handle:
        handle.write(torn)
    return directory, last, torn


def test_torn_tail_is_cut_at_open_and_recorded(tmp_path: Path) -> None:
    directory, last, torn = _torn_journal(tmp_path)
    assert not verify_journal(directory, workers=1).ok  # the torn line is visible before recovery
    with open_journal(directory, device_key_dir=tmp_path / "keys") as journal:
        assert journal.head().seq == last + 1  # the recovered entry itself
    entries = list(iter_entries(directory))
    recovered = [e for e in entries if e["kind"] == "recovered"]
    assert len(recovered) == 1
    body = recovered[0]["body"]
    assert body["cut_bytes"] == len(torn) and body["last_valid_seq"] == last
    assert (directory / body["saved_as"]).read_bytes() == torn
    result = verify_journal(directory, workers=1)
    assert result.ok, result.first_error
    assert [n.seq for n in result.notes] == [last + 1]


def test_a_running_writer_recovers_a_tail_torn_by_another_process(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, device_key_dir=tmp_path / "keys") as journal:
        journal.append("completion", {"i": 0})
        with open(directory / "segment-00000001.jsonl", "ab") as handle:
            handle.write(b'{"v":1,"seq":9')  # a second writer died mid-write
        receipt = journal.append("completion", {"i": 1}, durable=True)
    kinds = [e["kind"] for e in iter_entries(directory)]
    assert kinds[-2:] == ["recovered", "completion"]
    assert receipt.seq == len(kinds) - 1
    assert verify_journal(directory, workers=1).ok


def test_segment_cut_under_a_running_writer_goes_on_record(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, device_key_dir=tmp_path / "keys") as journal:
        for i in range(5):
            journal.append("completion", {"i": i})
        seen = journal.head()
        path = directory / "segment-00000001.jsonl"
        data = path.read_bytes()
        path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # drop the last entry
        journal.append("completion", {"i": 5})
    recovered = [e for e in iter_entries(directory) if e["kind"] == "recovered"]
    assert len(recovered) == 1
    assert recovered[0]["body"]["last_seen_seq"] == seen.seq
    assert recovered[0]["body"]["last_seen_hash"] == seen.entry_hash
    assert verify_journal(directory, workers=1).ok


def test_verify_waits_out_an_append_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl
    import threading

    import onbox.audit.verify as verify_module

    directory = tmp_path / "journal"
    with open_journal(directory, device_key_dir=tmp_path / "keys") as journal:
        journal.append("completion", {"i": 0})
    path = directory / "segment-00000001.jsonl"
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    line = data[last_start:]
    path.write_bytes(data[:last_start] + line[:20])  # a writer is half-way through its write

    checked = threading.Event()
    real_check = verify_module.check_segment
    calls: list[object] = []

    def observed(*args: object) -> object:
        calls.append(args)
        report = real_check(*args)
        checked.set()
        return report

    monkeypatch.setattr(verify_module, "check_segment", observed)
    lock = os.open(directory / ".lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # ... holding the journal lock, as writers do
    results: list[VerifyResult] = []
    thread = threading.Thread(target=lambda: results.append(verify_journal(directory, workers=1)))
    thread.start()
    assert checked.wait(timeout=60)
    with open(path, "ab") as handle:  # the write completes, then the lock is released
        handle.write(line[20:])
    fcntl.flock(lock, fcntl.LOCK_UN)
    os.close(lock)
    thread.join(timeout=60)
    assert results and results[0].ok, results and results[0].first_error
    assert len(calls) == 2  # the torn-looking tail was re-read under the lock
