"""The policy store against the attacks The Update Framework defends against, in small.

Each attack must be rejected with its reason, leave the last good policy in force, and
be journaled. Keys are real Ed25519 keys, bundles are real files, git repos are real.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import git
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onbox.classification.bundle import PolicyBundle, make_bundle
from onbox.classification.policy import BUILTIN_POLICY_ID
from onbox.classification.policy_store import PolicyStore, describe_policy_state
from onbox.classification.sources import DirectorySource, GitSource, pull
from onbox.classification.trust import TrustRoot
from tests.support.policies import PolicyBuilder

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def policy_bytes(pid: str, default: str = "internal", extra: str = "") -> bytes:
    """A policy that keeps everything on-box; ``extra`` is raw TOML added to it."""
    return PolicyBuilder(pid, default_label=default, extra=extra).toml().encode()


@dataclass
class RecordingJournal:
    """Accepts what the real journal accepts and remembers it."""

    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def append(self, kind: str, body: Mapping[str, Any], durable: bool = False) -> object:
        self.entries.append((kind, dict(body)))
        return None

    def kinds(self) -> list[str]:
        return [k for k, _ in self.entries]


@dataclass
class Env:
    tmp: Path
    keys: list[Ed25519PrivateKey]
    root_path: Path
    journal: RecordingJournal
    now: list[datetime]
    store: PolicyStore

    def bundle(
        self,
        serial: int,
        pid: str | None = None,
        *,
        keys: list[Ed25519PrivateKey] | None = None,
        days: int = 30,
        policy: bytes | None = None,
    ) -> bytes:
        data = policy if policy is not None else policy_bytes(pid or f"acme-{serial}")
        signers = self.keys[:1] if keys is None else keys
        expires = self.now[0] + timedelta(days=days)
        out: bytes = make_bundle(data, serial, expires, signers, issued=self.now[0]).to_bytes()
        return out

    def new_store(self) -> PolicyStore:
        return PolicyStore(
            self.store.directory,
            trust_root_path=self.root_path,
            journal=self.journal,
            clock=lambda: self.now[0],
        )

    def rejected(self) -> list[dict[str, Any]]:
        return [b for k, b in self.journal.entries if k == "policy-rejected"]


def make_env(tmp_path: Path, threshold: int = 1, nkeys: int = 2) -> Env:
    keys = [Ed25519PrivateKey.generate() for _ in range(nkeys)]
    root_path = tmp_path / "trust-root.json"
    root_path.write_bytes(TrustRoot.create([k.public_key() for k in keys], threshold).to_bytes())
    now = [T0]
    journal = RecordingJournal()
    store = PolicyStore(
        tmp_path / "data" / "policy",
        trust_root_path=root_path,
        journal=journal,
        clock=lambda: now[0],
    )
    return Env(tmp_path, keys, root_path, journal, now, store)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield make_env(tmp_path)


def assert_rejected(env: Env, data: bytes, reason: str, in_force: str) -> None:
    before = len(env.rejected())
    result = env.store.apply(data, "test")
    assert not result.applied and not result.changed and result.rejected
    assert reason in result.reason
    assert env.store.current().id == in_force
    assert env.new_store().current().id == in_force  # persisted state unchanged too
    assert len(env.rejected()) == before + 1
    assert reason in env.rejected()[-1]["reason"]
    assert describe_policy_state(env.store)["last_rejection"]["reason"] == result.reason


def test_happy_path_applies_persists_and_journals(env: Env) -> None:
    result = env.store.apply(env.bundle(1), "test")
    assert result.applied and result.changed and result.serial == 1
    policy = env.new_store().current()
    assert (policy.id, policy.serial, policy.expires) == ("acme-1", 1, T0 + timedelta(days=30))
    assert env.journal.kinds() == ["policy-applied"]
    assert env.journal.entries[0][1]["serial"] == 1
    state = describe_policy_state(env.store)
    assert state["trust_root"]["present"] and not state["fail_closed"]
    assert state["policy"]["serial"] == 1


def test_decisions_land_in_the_real_signed_journal(env: Env, tmp_path: Path) -> None:
    from onbox.audit import iter_entries, open_journal, verify_journal

    journal_dir = tmp_path / "journal"
    journal = open_journal(journal_dir, device_key_dir=tmp_path / "keys")
    env.store.journal = journal
    env.store.apply(env.bundle(1), "test")
    env.store.apply(env.bundle(1, keys=[]), "test")
    journal.close()
    entries = [(e["kind"], e["body"]) for e in iter_entries(journal_dir)]
    policy_entries = [(k, b) for k, b in entries if k.startswith("policy-")]
    assert [k for k, _ in policy_entries] == ["policy-applied", "policy-rejected"]
    assert policy_entries[0][1]["serial"] == 1
    assert "no signatures" in policy_entries[1][1]["reason"]
    assert verify_journal(journal_dir).ok


def test_no_trust_root_fails_closed_and_says_so(env: Env) -> None:
    env.root_path.unlink()
    policy = env.store.current()
    assert policy.id == BUILTIN_POLICY_ID
    assert "no usable trust root" in policy.source
    state = describe_policy_state(env.store)
    assert not state["trust_root"]["present"] and state["fail_closed"]
    result = env.store.apply(env.bundle(1), "test")
    assert result.rejected and "no trust root" in result.reason


def test_rollback_to_older_serial(env: Env) -> None:
    old = env.bundle(1)
    env.store.apply(old, "test")
    env.store.apply(env.bundle(2), "test")
    assert_rejected(
        env, old, "rollback refused: serial 1 is older than the applied serial 2", "acme-2"
    )


def test_same_serial_same_bytes_is_a_no_op(env: Env) -> None:
    data = env.bundle(1)
    env.store.apply(data, "test")
    again = env.store.apply(data, "test")
    assert again.applied and not again.changed and not again.rejected
    assert env.journal.kinds() == ["policy-applied"]


def test_same_serial_different_bytes(env: Env) -> None:
    env.store.apply(env.bundle(3), "test")
    evil = env.bundle(3, "weaker", policy=policy_bytes("acme-3", default="public"))
    assert_rejected(env, evil, "already applied with different content", "acme-3")


def test_expired_bundle(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    stale = env.bundle(2, days=1)
    env.now[0] = T0 + timedelta(days=2)
    assert_rejected(env, stale, "expired at", "acme-1")


def test_freeze_source_unreachable_until_past_expiry(env: Env, tmp_path: Path) -> None:
    stale = env.bundle(1, days=1)
    repo = _publish_repo(tmp_path / "remote", stale)
    source = GitSource(str(repo), cache_root=tmp_path / "cache")
    assert [r.applied for r in pull(env.store, [source])] == [True]
    shutil.rmtree(repo)  # the attacker blocks the source
    env.now[0] = T0 + timedelta(days=1, seconds=1)
    (result,) = pull(env.store, [source])
    assert not result.applied and "cannot fetch" in result.reason
    policy = env.store.current()
    assert policy.id == BUILTIN_POLICY_ID
    assert policy.default_label.name == "restricted"
    assert "acme-1 serial 1 expired at 2026-11-28T12:00:00Z" in policy.source
    assert "expired at" in (describe_policy_state(env.store)["warning"] or "")
    assert (source.clone_dir / "policy.onbox-policy").read_bytes() == stale  # clone kept
    # An attacker replaying the stale bundle (a "freeze") does not bring it back.
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "replay.onbox-policy").write_bytes(stale)
    (replay,) = pull(env.store, [DirectorySource(drop)])
    assert env.store.current().id == BUILTIN_POLICY_ID
    assert replay.applied and not replay.changed


def test_unsigned_bundle(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    assert_rejected(env, env.bundle(2, keys=[]), "has no signatures", "acme-1")


def test_signed_by_unknown_key(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    stranger = Ed25519PrivateKey.generate()
    assert_rejected(env, env.bundle(2, keys=[stranger]), "signed by unknown key", "acme-1")


def test_one_key_twice_towards_threshold_of_two(tmp_path: Path) -> None:
    env = make_env(tmp_path, threshold=2)
    env.store.apply(env.bundle(1, keys=env.keys), "test")
    assert env.store.current().id == "acme-1"
    raw = json.loads(env.bundle(2, keys=env.keys[:1]))
    raw["signatures"] = raw["signatures"] * 2
    doubled = json.dumps(raw).encode()
    assert_rejected(env, doubled, "1 of 2 required distinct trusted signatures", "acme-1")


def test_rotation_signed_only_by_new_keys(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    new_keys = [Ed25519PrivateKey.generate() for _ in range(2)]
    new_root = TrustRoot.create([k.public_key() for k in new_keys], 1, version=2)
    for key in new_keys:
        new_root = new_root.with_signature(key)
    before = env.root_path.read_bytes()
    result = env.store.rotate_trust_root(new_root.to_bytes(), "test")
    assert result.rejected and "by the current keys" in result.reason
    assert env.root_path.read_bytes() == before
    assert env.store.current().id == "acme-1"
    assert "by the current keys" in env.rejected()[-1]["reason"]
    # A bundle signed by the would-be new keys is still refused.
    assert_rejected(env, env.bundle(2, keys=new_keys), "unknown key", "acme-1")
    # Signed by the old keys as well, it is accepted; old-key bundles stop verifying.
    good = new_root.with_signature(env.keys[0])
    assert env.store.rotate_trust_root(good.to_bytes(), "test").applied
    assert env.store.apply(env.bundle(2, keys=new_keys), "test").applied
    assert env.store.current().id == "acme-2"


def test_oversized_bundle(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    huge = policy_bytes("acme-2", extra="# " + "x" * (1024 * 1024) + "\n")
    assert_rejected(env, env.bundle(2, policy=huge), "size cap", "acme-1")


def test_malformed_toml(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    bad = b'[policy\nid = "broken"\n'
    assert_rejected(env, env.bundle(2, policy=bad), "policy is invalid", "acme-1")


def test_catastrophic_regex(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    evil = policy_bytes(
        "acme-2",
        extra='[[detectors]]\nname = "evil"\nkind = "regex"\n'
        "pattern = '^(a+)+\\1$'\nlabel = \"restricted\"\n",
    )
    assert_rejected(env, env.bundle(2, policy=evil), "regex", "acme-1")


def test_nested_quantifier_regex_never_runs_on_a_backtracking_engine(env: Env) -> None:
    import re

    nested = policy_bytes(
        "acme-1",
        extra='[[detectors]]\nname = "nested"\nkind = "regex"\n'
        "pattern = '(a+)+$'\nlabel = \"restricted\"\n",
    )
    result = env.store.apply(env.bundle(1, policy=nested), "test")
    if result.applied:  # accepted only when compiled by RE2, which runs in linear time
        (detector,) = env.store.current().detectors
        assert not isinstance(detector.compiled, re.Pattern)
    else:
        assert "regex" in result.reason and env.rejected()


def test_git_source_with_rewritten_history(env: Env, tmp_path: Path) -> None:
    remote = _publish_repo(tmp_path / "remote", env.bundle(1))
    source = GitSource(str(remote), cache_root=tmp_path / "cache")
    assert pull(env.store, [source])[0].applied
    # An admin rewrites history (squash + force push) and publishes serial 2: still fetched.
    _rewrite(remote, env.bundle(2), "squashed history")
    (result,) = pull(env.store, [source])
    assert result.applied and result.changed and env.store.current().id == "acme-2"
    # An attacker rewrites history back to the serial 1 bundle: fetched, and refused.
    _rewrite(remote, env.bundle(1), "rollback attempt")
    (attack,) = pull(env.store, [source])
    assert attack.rejected and "rollback refused" in attack.reason
    assert "rollback refused" in env.rejected()[-1]["reason"]
    assert env.store.current().id == "acme-2"


def test_tampered_last_good_on_disk_is_not_trusted(env: Env) -> None:
    env.store.apply(env.bundle(1), "test")
    raw = json.loads(env.store.last_good_path.read_bytes())
    weaker = PolicyBundle.from_bytes(env.bundle(1, policy=policy_bytes("mine", default="public")))
    raw["policy"] = json.loads(weaker.to_bytes())["policy"]
    env.store.last_good_path.write_text(json.dumps(raw))
    policy = env.new_store().current()
    assert policy.id == BUILTIN_POLICY_ID and "no longer verifies" in policy.source


def test_a_failing_journal_does_not_undo_the_decision(env: Env) -> None:
    class BrokenJournal:  # fault injection: the real journal's disk is full
        def append(self, kind: str, body: Mapping[str, Any], durable: bool = False) -> object:
            raise OSError("No space left on device")

    env.store.journal = BrokenJournal()
    assert env.store.apply(env.bundle(1), "test").applied
    assert env.store.apply(env.bundle(1, keys=[]), "test").rejected
    assert env.store.current().id == "acme-1"


def _publish_repo(path: Path, bundle: bytes) -> Path:
    """A bare 'remote' with one commit holding policy.onbox-policy; returns its path."""
    work = path.parent / (path.name + "-work")
    repo = git.Repo.init(work, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Admin")
        cfg.set_value("user", "email", "admin@example.com")
    (work / "policy.onbox-policy").write_bytes(bundle)
    repo.index.add(["policy.onbox-policy"])
    repo.index.commit("publish policy")
    git.Repo.init(path, bare=True, initial_branch="main")
    repo.create_remote("origin", str(path)).push("main:main").raise_if_error()
    return path


def _rewrite(remote: Path, bundle: bytes, message: str) -> None:
    """Replace the remote's history with one new root commit (a force push)."""
    work = git.Repo(remote.parent / (remote.name + "-work"))
    work.git.checkout("--orphan", "rewritten")
    (Path(work.working_dir) / "policy.onbox-policy").write_bytes(bundle)
    work.index.add(["policy.onbox-policy"])
    work.index.commit(message)
    work.git.push("--force", "origin", "rewritten:main")
    work.git.checkout("-B", "main", "rewritten")
    work.git.branch("-D", "rewritten")
