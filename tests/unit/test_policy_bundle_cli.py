"""The admin and workstation commands, run as a real `onbox` subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.classification.policy import parse_policy
from onbox.server.commands.policy import EXAMPLE_POLICY


class Onbox:
    """Runs ``python -m onbox`` with every Onbox directory under one temp dir."""

    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp
        self.env = dict(
            os.environ,
            ONBOX_DATA_DIR=str(tmp / "data"),
            ONBOX_CACHE_DIR=str(tmp / "cache"),
            ONBOX_CONFIG_DIR=str(tmp / "config"),
            ONBOX_JOURNAL_DIR=str(tmp / "journal"),
            ONBOX_TRUST_ROOT=str(tmp / "installed-root.json"),
        )

    def __call__(self, *args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "onbox", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, f"{args}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout if "--json" in args else done.stdout + done.stderr


@pytest.fixture
def onbox(tmp_path: Path) -> Onbox:
    return Onbox(tmp_path)


def test_example_policy_is_valid() -> None:
    assert parse_policy(EXAMPLE_POLICY.encode(), "example").id == "acme-2026-11"


def test_admin_flow_sign_verify_pull(onbox: Onbox, tmp_path: Path) -> None:
    onbox("admin", "keygen", "--out", "a1")
    onbox("admin", "keygen", "--out", "a2")
    assert stat.S_IMODE((tmp_path / "a1.key").stat().st_mode) == 0o600
    onbox("admin", "keygen", "--out", "a1", code=2)  # never overwrite a key
    onbox("policy", "verify", "x", code=3)  # no trust root yet
    onbox("admin", "trust-root", "init", "--key", "a1.pub", "--key", "a2.pub",
          "--threshold", "2", "--out", "root1.json")  # fmt: skip
    onbox("admin", "trust-root", "install", "root1.json")
    onbox("policy", "init", "--out", "p.toml")
    assert "valid policy 'acme-2026-11'" in onbox("policy", "check", "p.toml")

    sign = ("policy", "sign", "p.toml", "--serial", "1", "--expires", "2099-01-01")
    onbox(*sign, "--key", "a1.key", "--out", "one.onbox-policy")
    out = onbox("policy", "verify", "one.onbox-policy", code=1)
    assert "1 of 2 required distinct trusted signatures" in out
    onbox(*sign, "--key", "a1.key", "--key", "a2.key", "--out", "two.onbox-policy")
    info = json.loads(onbox("policy", "verify", "two.onbox-policy", "--json"))
    assert info["valid"] and info["serial"] == 1 and len(info["signers"]) == 2

    drop = tmp_path / "drop"
    drop.mkdir()
    (tmp_path / "two.onbox-policy").rename(drop / "two.onbox-policy")
    (result,) = json.loads(onbox("policy", "pull", "--source", str(drop), "--json"))
    assert result["applied"] and result["serial"] == 1
    status = json.loads(onbox("policy", "status", "--json"))
    assert status["policy"]["id"] == "acme-2026-11" and not status["fail_closed"]

    (tmp_path / "one.onbox-policy").rename(drop / "zz.onbox-policy")
    os.utime(drop / "zz.onbox-policy", ns=(2**62, 2**62))
    (rejected,) = json.loads(onbox("policy", "pull", "--source", str(drop), "--json", code=1))
    assert rejected["rejected"] and "threshold not met" in rejected["reason"]


def test_sign_refuses_an_invalid_policy(onbox: Onbox, tmp_path: Path) -> None:
    onbox("admin", "keygen", "--out", "a1")
    (tmp_path / "bad.toml").write_text('[policy]\nid = "x"\nlabels = ["a", "a"]\n')
    onbox("policy", "check", "bad.toml", code=1)
    out = onbox("policy", "sign", "bad.toml", "--key", "a1.key", "--serial", "1",
                "--expires", "2099-01-01", "--out", "b", code=1)  # fmt: skip
    assert "refusing to sign an invalid policy" in out
    assert not (tmp_path / "b").exists()


def test_trust_root_rotation(onbox: Onbox) -> None:
    for name in ("old1", "old2", "new1"):
        onbox("admin", "keygen", "--out", name)
    onbox("admin", "trust-root", "init", "--key", "old1.pub", "--key", "old2.pub",
          "--threshold", "2", "--out", "r1.json")  # fmt: skip
    onbox("admin", "trust-root", "install", "r1.json")
    onbox("admin", "trust-root", "rotate", "--from", "r1.json", "--key", "new1.pub",
          "--threshold", "1", "--out", "r2.json")  # fmt: skip
    onbox("admin", "trust-root", "sign", "r2.json", "--key", "new1.key")
    out = onbox("admin", "trust-root", "install", "r2.json", code=1)
    assert "by the current keys" in out
    onbox("admin", "trust-root", "sign", "r2.json", "--key", "old1.key")
    assert "1 of 2" in onbox("admin", "trust-root", "verify", "r2.json", code=1)
    onbox("admin", "trust-root", "sign", "r2.json", "--key", "old2.key")
    onbox("admin", "trust-root", "verify", "r2.json")
    onbox("admin", "trust-root", "install", "r2.json")
    status = json.loads(onbox("policy", "status", "--json"))
    assert status["trust_root"]["version"] == 2 and status["trust_root"]["threshold"] == 1
    assert "expected exactly 3" in onbox("admin", "trust-root", "install", "r1.json", code=1)
