"""Signed policy reaches a running ``onbox serve`` without a restart (issue 6).

An admin makes keys and a trust root with the real ``onbox admin`` / ``onbox policy``
commands, publishes signed bundles to a git repository (bare remote + working clone that
pushes) and drops them into a watched directory. The server under test, started with
both as ``policy.sources``, must re-label the open document on ``onbox/policyPull`` and
on a dropped file, and must refuse a rolled-back bundle: label unchanged, one
``window/showMessage`` naming the rejection, and a ``policy-rejected`` journal entry.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from onbox.classification.sources import GitSource
from tests.e2e.lsp_support import (
    SERVER_COMMAND,
    make_client,
    open_doc,
    part,
    request,
    wait_for_message,
    wait_for_status,
)
from tests.support.policies import PolicyBuilder

pytestmark = [pytest.mark.model, pytest.mark.slow]

BUNDLE_NAME = "policy.onbox-policy"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, failing the test with its output if it fails."""
    done = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def git(repo: Path, *args: str) -> None:
    """Run git in ``repo`` with a fixed identity."""
    run("git", "-c", "user.name=Admin", "-c", "user.email=admin@example.com", *args, cwd=repo)


@dataclass
class Admin:
    """The policy admin's desk: keys, a trust root, signing, publishing."""

    desk: Path
    env: dict[str, str]
    publish_clone: Path

    def onbox(self, *args: str) -> str:
        """Run the real ``onbox`` CLI as the admin."""
        return run(sys.executable, "-m", "onbox", *args, cwd=self.desk, env=self.env)

    def sign(self, serial: int, label: str) -> Path:
        """Sign a policy that gives ``acme/docs`` the base ``label``; returns the bundle."""
        toml = self.desk / f"policy-{serial}.toml"
        PolicyBuilder("e2e-reload").repo("github.com/acme/docs", label).write(toml)
        out = self.desk / f"serial-{serial}.onbox-policy"
        self.onbox("policy", "sign", str(toml), "--key", "admin.key", "--serial", str(serial),
                   "--expires", "2099-01-01", "--out", str(out))  # fmt: skip
        return out

    def publish(self, bundle: Path, message: str) -> None:
        """Commit the bundle to the policy repository and push it."""
        shutil.copyfile(bundle, self.publish_clone / BUNDLE_NAME)
        git(self.publish_clone, "add", BUNDLE_NAME)
        git(self.publish_clone, "commit", "-q", "-m", message)
        git(self.publish_clone, "push", "-q", "origin", "main")


def drop(directory: Path, bundle: Path, name: str) -> None:
    """Drop a bundle into a watched directory atomically (hidden temp name, then rename)."""
    tmp = directory / f".{name}.tmp"
    shutil.copyfile(bundle, tmp)
    tmp.rename(directory / name)


@pytest.fixture
def server_env(tmp_path: Path, default_model: Path) -> dict[str, str]:
    """This server's own data dir and trust root; the run's model cache."""
    return {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_JOURNAL_DIR": str(tmp_path / "data" / "journal"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "data" / "trust-root.json"),
    }


@pytest.fixture
def admin(tmp_path: Path, server_env: dict[str, str]) -> Iterator[Admin]:
    """Keys and an installed trust root; a bare policy repo with a clone that pushes."""
    desk = tmp_path / "admin"
    desk.mkdir()
    bare = tmp_path / "policy.git"
    run("git", "init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    clone = tmp_path / "policy-work"
    run("git", "clone", "-q", str(bare), str(clone), cwd=tmp_path)
    git(clone, "checkout", "-q", "-b", "main")
    result = Admin(desk, server_env, clone)
    result.onbox("admin", "keygen", "--out", "admin")
    result.onbox("admin", "trust-root", "init", "--key", "admin.pub", "--threshold", "1",
                 "--out", "root.json")  # fmt: skip
    result.onbox("admin", "trust-root", "install", "root.json")
    assert Path(server_env["ONBOX_TRUST_ROOT"]).is_file()
    yield result
    # The server clones git sources into ONBOX_CACHE_DIR (shared with the model): tidy up.
    clone_dir = GitSource(f"file://{bare}", "main").clone_dir
    shutil.rmtree(clone_dir, ignore_errors=True)
    Path(f"{clone_dir}.lock").unlink(missing_ok=True)


@pytest.fixture
def docs_repo(tmp_path: Path) -> Path:
    """A project whose remote the policy's ``[[repos]]`` rule matches."""
    root = tmp_path / "docs"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "remote", "add", "origin", "git@github.com:acme/docs.git")
    (root / "guide.py").write_text("def greet(name):\n    return f'hello {name}'\n")
    return root


def for_serial(uri: str, serial: int) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a document status under the policy with ``serial``."""
    return lambda p: (
        p.get("uri") == uri and "label" in p and part(p.get("policy"), "serial") == serial
    )


async def test_signed_policy_reloads_from_git_and_directory_and_refuses_rollback(
    tmp_path: Path, server_env: dict[str, str], admin: Admin, docs_repo: Path
) -> None:
    serial1 = admin.sign(1, "restricted")
    admin.publish(serial1, "policy serial 1")
    dropbox = tmp_path / "dropbox"
    dropbox.mkdir()
    bare_url = f"file://{tmp_path / 'policy.git'}"

    config = ClientServerConfig(
        server_command=SERVER_COMMAND, client_factory=make_client, server_env=server_env
    )
    client = cast(LanguageClient, await config.start())
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("visual-studio-code"),
                root_uri=docs_repo.as_uri(),
                initialization_options={
                    "policy": {
                        "sources": [f"git+{bare_url}#main", str(dropbox)],
                        "pullMinutes": 15,
                    },
                },
            )
        )
        uri = (docs_repo / "guide.py").as_uri()
        open_doc(client, uri, (docs_repo / "guide.py").read_text())

        # Serial 1 arrives by the pull at start (before or after didOpen).
        status = await wait_for_status(client, for_serial(uri, 1), timeout=60)
        assert status["label"] == "restricted"
        assert part(status["policy"], "id") == "e2e-reload"
        assert not part(status["policy"], "warning")

        # Serial 2 is pushed; an explicit pull re-labels the open document, no restart.
        admin.publish(admin.sign(2, "public"), "policy serial 2: docs are public")
        pulled = await asyncio.wait_for(request(client, "onbox/policyPull", {}), 60)
        assert pulled.applied and pulled.serial == 2, pulled
        status = await wait_for_status(client, for_serial(uri, 2), timeout=30)
        assert status["label"] == "public"

        # Serial 3 is dropped into the watched directory: picked up without any request.
        drop(dropbox, admin.sign(3, "internal"), "serial-3.onbox-policy")
        status = await wait_for_status(client, for_serial(uri, 3), timeout=30)
        assert status["label"] == "internal"

        # A rollback to serial 1 is refused: said once, label and policy unchanged.
        drop(dropbox, serial1, "rollback.onbox-policy")
        shown = await wait_for_message(client, lambda m: "rollback refused" in m)
        assert "serial 1" in shown and "serial 3" in shown and "rollback.onbox-policy" in shown
        explain = await request(client, "onbox/explain", {"uri": uri})
        assert explain.label == "internal" and explain.policy.serial == 3
        health = await request(client, "onbox/health", {})
        assert health.policy.serial == 3
        assert "rollback refused" in health.policy.store.last_rejection.reason
        labels = [p["label"] for p in client.statuses if p.get("uri") == uri]  # type: ignore[attr-defined]
        assert labels[-1] == "internal"
        assert sum("rollback refused" in m.message for m in client.messages) == 1
    finally:
        await client.shutdown_session()
        await client.stop()  # type: ignore[no-untyped-call]

    entries = list(iter_entries(Path(server_env["ONBOX_JOURNAL_DIR"])))
    applied = [
        e["body"]["serial"]
        for e in entries
        if e["kind"] == "policy-applied" and e["body"]["subject"] == "policy-bundle"
    ]
    assert applied == [1, 2, 3]
    rejected = [e["body"] for e in entries if e["kind"] == "policy-rejected"]
    assert len(rejected) == 1 and rejected[0]["serial"] == 1
    assert "rollback refused" in rejected[0]["reason"]
    assert "rollback.onbox-policy" in rejected[0]["origin"]


CHANNEL_PROBE = """
import sys
from llama_cpp._utils import suppress_stdout_stderr
from onbox.server.commands.serve import private_stdout

channel = private_stdout()
with suppress_stdout_stderr(disable=False):  # what Llama(verbose=False) does while loading
    channel.write(b"Content-Length: 2\\r\\n\\r\\n{}")
    channel.flush()
    print("stray native output", flush=True)
print("after the load", flush=True)
"""


def test_lsp_channel_survives_the_model_loads_stdout_redirect(tmp_path: Path) -> None:
    """Why the statuses above once went missing: messages written during a model load.

    llama-cpp-python points fd 1 at /dev/null while it loads; ``onbox serve`` must keep
    its LSP channel on a private descriptor, and stray prints must not reach the channel.
    """
    done = subprocess.run(
        [sys.executable, "-c", CHANNEL_PROBE],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"Content-Length: 2\r\n\r\n{}"
    assert b"after the load" in done.stderr and b"stray native output" not in done.stdout
