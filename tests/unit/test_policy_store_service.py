"""PolicyService: a dropped bundle, a git-published bundle and another process's apply
all reach ``on_change``; each distinct problem reaches ``on_error`` once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from onbox.classification.policy import BUILTIN_POLICY_ID, Policy
from onbox.classification.sources import DirectorySource, GitSource
from onbox.server.policy_service import PolicyService
from tests.unit.test_policy_store import T0, Env, _publish_repo, _rewrite, make_env

WAIT_S = 30.0  # an upper bound for a stuck service, not a performance expectation


class Recorder:
    """Collects callbacks and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.changes: list[Policy] = []
        self.errors: list[str] = []
        self.changed = threading.Event()

    def on_change(self, policy: Policy) -> None:
        self.changes.append(policy)
        self.changed.set()

    def on_error(self, message: str) -> None:
        self.errors.append(message)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _drop(directory: Path, name: str, data: bytes) -> None:
    """Write a bundle the way device management should: whole file, then rename."""
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, directory / name)


@pytest.fixture
def running(env: Env, recorder: Recorder, tmp_path: Path) -> Iterator[PolicyService]:
    drop = tmp_path / "drop"
    drop.mkdir()
    service = PolicyService(
        env.store, [DirectorySource(drop)], 3600.0, recorder.on_change, recorder.on_error
    )
    service.start()
    yield service
    service.stop()


def test_dropped_bundle_is_applied_and_announced(
    env: Env, recorder: Recorder, running: PolicyService, tmp_path: Path
) -> None:
    assert running.policy.id == BUILTIN_POLICY_ID
    _drop(tmp_path / "drop", "acme.onbox-policy", env.bundle(1))
    assert recorder.changed.wait(WAIT_S)
    assert [(p.id, p.serial) for p in recorder.changes] == [("acme-1", 1)]
    assert running.policy.id == "acme-1"
    assert env.journal.kinds() == ["policy-applied"]


def test_git_published_bundle_via_pull_now(env: Env, recorder: Recorder, tmp_path: Path) -> None:
    remote = _publish_repo(tmp_path / "remote", env.bundle(1))
    service = PolicyService(
        env.store,
        [GitSource(str(remote), "main", cache_root=tmp_path / "cache")],
        3600.0,
        recorder.on_change,
        recorder.on_error,
    )
    assert [r.changed for r in service.pull_now()] == [True]
    _rewrite(remote, env.bundle(2), "serial 2")
    assert [r.changed for r in service.pull_now()] == [True]
    assert [(p.id, p.serial) for p in recorder.changes] == [("acme-1", 1), ("acme-2", 2)]
    assert recorder.errors == []


def test_a_bundle_applied_by_another_process_is_picked_up(
    env: Env, recorder: Recorder, running: PolicyService, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _drop(elsewhere, "b.onbox-policy", env.bundle(5, days=3650))
    child_env = dict(
        os.environ,
        ONBOX_DATA_DIR=str(env.store.directory.parent),
        ONBOX_TRUST_ROOT=str(env.root_path),
        ONBOX_JOURNAL_DIR=str(tmp_path / "journal"),
        ONBOX_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "onbox", "policy", "pull", "--source", str(elsewhere)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert recorder.changed.wait(WAIT_S)
    assert [(p.id, p.serial) for p in recorder.changes] == [("acme-5", 5)]


def test_each_distinct_problem_is_reported_once(
    env: Env, recorder: Recorder, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    _drop(drop, "a.onbox-policy", env.bundle(1, days=1))
    service = PolicyService(
        env.store, [DirectorySource(drop)], 3600.0, recorder.on_change, recorder.on_error
    )
    service.pull_now()
    _drop(drop, "b.onbox-policy", env.bundle(2, keys=[]))
    os.utime(drop / "b.onbox-policy", ns=(2**62, 2**62))  # make it the newest
    service.pull_now()
    service.pull_now()
    assert len(recorder.errors) == 1 and "has no signatures" in recorder.errors[0]
    env.now[0] = T0 + timedelta(days=2)  # the source now only offers broken bundles
    service.pull_now()
    service.pull_now()
    assert len(recorder.errors) == 2 and "expired at" in recorder.errors[1]
    assert recorder.changes[-1].id == BUILTIN_POLICY_ID
    assert "expired at" in recorder.changes[-1].source
