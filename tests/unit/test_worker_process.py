"""The model worker as a real process with the real default model: sharing, cancel, faults.

The model is never loaded in the pytest process: every generation happens in a worker
that these tests start, fault on purpose (``ONBOX_WORKER_FAULT``) and stop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onbox.inference.destination import CancelToken, CompletionRequest
from onbox.inference.errors import Cancelled, ModelError
from onbox.inference.local import ModelSettings
from onbox.inference.worker_client import WorkerCrashed, WorkerDestination
from onbox.inference.worker_profiles import ProfileMemory, amx_flags, cpu_flags
from tests.support.workers import processes_mapping, profile_ladder, stop_workers, worker_pids

pytestmark = pytest.mark.model
pytest.importorskip("llama_cpp")

ONBOX_COMPLETE = [sys.executable, "-m", "onbox", "complete"]
ADD = CompletionRequest(prefix="def add(a, b):\n    ", suffix="", max_tokens=8, temperature=0.0)
LADDER = profile_ladder()  # configured, then no-extra-buffers (cpu-only on AMX), …
SAFER = LADDER[1]  # where a crash of the configured profile steps down to


@pytest.fixture
def worker_env(
    tmp_path: Path, default_model: Path, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A private runtime dir and cache (profile memory) per test; every worker stopped after."""
    runtime = tempfile.mkdtemp(prefix="ob-", dir="/tmp")
    cache = tmp_path / "cache"
    cache.mkdir()
    hashes = model_cache_dir / "model-hashes.json"
    if hashes.exists():  # the default model's sha256 is known: no re-hashing per test
        shutil.copy(hashes, cache / "model-hashes.json")
    monkeypatch.setenv("ONBOX_RUNTIME_DIR", runtime)
    monkeypatch.setenv("ONBOX_CACHE_DIR", str(cache))
    monkeypatch.delenv("ONBOX_WORKER_FAULT", raising=False)
    yield runtime
    for dest in _CREATED:
        dest.close()
    _CREATED.clear()
    stop_workers(runtime)
    shutil.rmtree(runtime, ignore_errors=True)


def _dest(model: Path, **settings: Any) -> tuple[WorkerDestination, list[dict[str, Any]]]:
    crashes: list[dict[str, Any]] = []
    dest = WorkerDestination(ModelSettings(path=str(model), **settings), on_crash=crashes.append)
    _CREATED.append(dest)
    return dest, crashes


_CREATED: list[WorkerDestination] = []


def test_clients_share_one_worker_and_one_copy_of_the_model(
    worker_env: str, default_model: Path
) -> None:
    dests = [_dest(default_model)[0] for _ in range(3)]
    errors: list[BaseException] = []

    def load(d: WorkerDestination) -> None:
        try:
            d.load()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(d,)) for d in dests]  # racing starts
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    pids = {d.worker_pid for d in dests}
    assert len(pids) == 1 and worker_pids(worker_env) == list(pids)
    # `onbox complete` joins the same worker
    env = {**os.environ, "ONBOX_DATA_DIR": str(Path(worker_env) / "data")}
    target = Path(worker_env) / "a.py"
    target.write_text("def add(a, b):\n    ")
    cli = subprocess.run(
        [*ONBOX_COMPLETE, f"{target}:2:end", "--json", "--model", str(default_model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["outcome"] in ("served", "empty")
    assert worker_pids(worker_env) == list(pids)
    # Workers of other tests (or other runs) may map the same file; among this test's
    # processes — the clients in this process and the workers under its runtime dir —
    # exactly one maps it.
    ours = {os.getpid(), *worker_pids(worker_env)}
    mappers = [p for p in processes_mapping(default_model) if p in ours]
    assert mappers == list(pids), "exactly one process maps the GGUF"
    (pid,) = pids
    for d in dests:
        assert d.complete(ADD, CancelToken()).text.startswith("return a + b")
        assert d.describe()["workerPid"] == pid


def test_a_queued_request_cancelled_never_reaches_the_model(
    worker_env: str, default_model: Path
) -> None:
    a, _ = _dest(default_model)
    b, _ = _dest(default_model)
    a.load()
    b.load()
    long = CompletionRequest(
        prefix="# count to one thousand\n1, 2, 3, 4,",
        suffix="",
        max_tokens=400,
        temperature=0.0,
        stop_at_block_end=False,
    )
    running = CancelToken()
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(c=a.complete(long, running)))
    t.start()
    time.sleep(0.3)  # a's generation holds the model
    queued = CancelToken()
    threading.Timer(0.1, queued.cancel, args=("superseded",)).start()
    with pytest.raises(Cancelled):
        b.complete(long, queued)
    assert b.generations_started == 0, "the cancelled request reached the model"
    running.cancel("$/cancelRequest")
    t.join(60)
    completion = result["c"]
    assert completion.finish_reason == "cancelled"
    assert 0 < completion.tokens_out < long.max_tokens
    assert a.last_finish == "cancelled"


def test_segfault_steps_down_once_and_is_remembered(
    worker_env: str, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "segv-on-decode@configured")
    dest, crashes = _dest(default_model)
    dest.load()
    first = dest.worker_pid
    with pytest.raises(WorkerCrashed, match="SIGSEGV"):
        dest.complete(ADD, CancelToken())
    assert len(crashes) == 1
    crash = crashes[0]
    assert (crash["cause"], crash["profile"], crash["nextProfile"]) == (
        "SIGSEGV",
        "configured",
        SAFER,
    )
    assert crash["pid"] == first and crash["modelSha256"] == dest.model_sha256
    # the next request restarts the worker with the safer profile and is answered
    completion = dest.complete(ADD, CancelToken())
    assert completion.text.startswith("return a + b")
    assert dest.worker_pid != first and dest.profile and dest.profile["name"] == SAFER
    assert dest.describe()["profile"] == SAFER
    assert len(crashes) == 1
    # a later start (new server, new worker) goes straight to the remembered profile
    dest.stop_worker()
    fresh, fresh_crashes = _dest(default_model)
    assert fresh.complete(ADD, CancelToken()).text.startswith("return a + b")
    assert fresh.profile and fresh.profile["name"] == SAFER and not fresh_crashes
    memory = json.loads((Path(os.environ["ONBOX_CACHE_DIR"]) / "model-profiles.json").read_text())
    (entry,) = memory.values()
    assert entry["works"] == SAFER and entry["crashed"] == {"configured": "SIGSEGV"}


def test_repeated_crashes_end_in_unavailable_not_a_loop(
    worker_env: str, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "segv-on-decode")
    dest, crashes = _dest(default_model)
    for _ in LADDER:
        with pytest.raises(WorkerCrashed):
            dest.complete(ADD, CancelToken())
    assert [c["profile"] for c in crashes] == LADDER
    assert crashes[-1]["unavailable"] is True
    assert dest.error and dest.error.startswith(
        f"on-box model unavailable: crashed {len(LADDER)} times"
    )
    with pytest.raises(ModelError, match="see onbox doctor"):
        dest.complete(ADD, CancelToken())
    assert worker_pids(worker_env) == [], "no worker is started again"
    # a new server on this machine does not crash-loop either: it is told at once
    again, again_crashes = _dest(default_model)
    with pytest.raises(ModelError, match=f"crashed {len(LADDER)} times"):
        again.load()
    assert not again_crashes and len(crashes) == len(LADDER)


def test_a_hang_is_killed_at_the_deadline_and_the_next_request_works(
    worker_env: str, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "hang-on-decode@configured")
    dest, crashes = _dest(default_model, deadline_seconds=8.0)
    dest.load()
    hung = dest.worker_pid
    with pytest.raises(WorkerCrashed, match="hang"):
        dest.complete(ADD, CancelToken())
    assert crashes and "SIGKILL" in crashes[0]["cause"]
    deadline = time.monotonic() + 10  # SIGKILL is delivered at once; exiting takes a moment
    while hung in worker_pids(worker_env) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung not in worker_pids(worker_env)
    assert dest.complete(ADD, CancelToken()).text.startswith("return a + b")


def test_idle_worker_exits_and_the_next_request_starts_one_without_a_crash(
    worker_env: str, default_model: Path
) -> None:
    dest, crashes = _dest(default_model, worker_idle_seconds=1.0)
    dest.complete(ADD, CancelToken())
    first = dest.worker_pid
    deadline = time.monotonic() + 30
    while worker_pids(worker_env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_pids(worker_env) == []
    assert dest.complete(ADD, CancelToken()).text.startswith("return a + b")
    assert dest.worker_pid != first and crashes == []
    assert ProfileMemory().entry(next(iter(json.loads(
        (Path(os.environ["ONBOX_CACHE_DIR"]) / "model-profiles.json").read_text()
    ))))["crashed"] == {}  # fmt: skip


def test_another_users_worker_is_refused(
    worker_env: str, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onbox.inference.worker_client as client

    real = client.peer_credentials
    monkeypatch.setattr(client, "peer_credentials", lambda s: (real(s)[0], os.getuid() + 1, 0))
    dest, _ = _dest(default_model)
    with pytest.raises(ModelError, match="refusing the model worker"):
        dest.load()


def test_doctor_smoke_test_steps_down_in_a_child_and_reports_why(
    worker_env: str, default_model: Path
) -> None:
    env = {
        **os.environ,
        "ONBOX_WORKER_FAULT": "segv-on-decode@configured",
        "ONBOX_DATA_DIR": str(Path(worker_env) / "data"),
    }
    doctor = subprocess.run(
        [sys.executable, "-m", "onbox", "doctor", "--json", "--model", str(default_model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stderr
    smoke = json.loads(doctor.stdout)["smokeTest"]
    assert smoke["attempts"] == [
        {"profile": "configured", "outcome": "SIGSEGV"},
        {"profile": SAFER, "outcome": "ok"},
    ]
    assert smoke["profile"]["name"] == SAFER and "crashed" in smoke["profile"]["why"]
    # the next worker starts with the profile the doctor proved
    dest, crashes = _dest(default_model)
    os.environ["ONBOX_WORKER_FAULT"] = "segv-on-decode@configured"
    try:
        assert dest.complete(ADD, CancelToken()).text.startswith("return a + b")
    finally:
        del os.environ["ONBOX_WORKER_FAULT"]
    assert not crashes and dest.profile and dest.profile["name"] == SAFER


def test_a_hang_is_not_remembered_for_the_machine(
    worker_env: str, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hang may be a loaded machine: this session steps down, the next one starts afresh."""
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "hang-on-decode@configured")
    dest, crashes = _dest(default_model, deadline_seconds=10.0)
    with pytest.raises(WorkerCrashed, match="hang"):
        dest.complete(ADD, CancelToken())
    assert [c["profile"] for c in crashes] == ["configured"]
    assert dest.complete(ADD, CancelToken()).text.startswith("return a + b")
    assert dest.profile is not None and dest.profile["name"] != "configured"
    memory = json.loads((Path(os.environ["ONBOX_CACHE_DIR"]) / "model-profiles.json").read_text())
    assert memory and all(entry["crashed"] == {} for entry in memory.values())


@pytest.mark.skipif(
    not amx_flags(cpu_flags()),
    reason="needs a CPU with AMX (the real llama.cpp crash, not an injected one)",
)
def test_real_amx_crash_with_extra_buffers_forced_on_steps_down(
    worker_env: str, default_model: Path
) -> None:
    """On an AMX CPU, forcing llama.cpp's extra buffer types on makes the real default model
    crash inside llama.cpp. The server must survive it: the worker dies, the crash is
    reported once, and the next request is answered by the safer profile."""
    dest, crashes = _dest(default_model, extra_buffer_types="on")
    answers = []
    for _ in range(3):
        try:
            answers.append(dest.complete(ADD, CancelToken()).text)
        except WorkerCrashed:
            continue
        break
    assert answers and answers[-1].startswith("return a + b")
    assert dest.profile and dest.profile["name"] == "no-extra-buffers"
    assert len(crashes) == 1 and crashes[0]["profile"] == "configured"
    assert crashes[0]["cause"].startswith("SIG")
