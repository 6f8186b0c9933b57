"""No journal, no egress, through the real ``onbox serve`` (issue 5).

A public file whose policy route starts at a loopback "cloud" (a recording server) must
still get its completion when the audit journal cannot be written, served by the
on-box model, and the cloud must receive nothing; the editor is told why with
``window/showMessage``. Two ways to break the journal:

* at start: ``journal.dir`` lies under a regular file, so the directory cannot be made
  (root ignores permission bits, so ``chmod`` would prove nothing);
* mid-session: the journal lives on a small tmpfs that is filled up after one journalled
  egress (skipped where this sandbox may not mount a tmpfs).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from tests.e2e.lsp_support import (
    ROUTING_POLICY,
    SERVER_COMMAND,
    git,
    make_client,
    open_doc,
    part,
    request,
    wait_for_message,
    wait_for_status,
    wait_ready,
)
from tests.support.recording_server import RecordingServer

pytestmark = [pytest.mark.model, pytest.mark.slow]

POLICY = ROUTING_POLICY.replace("{policy_id}", "e2e-journal-failure")

CLOUD_REPLY = "return a + b"
SOURCE = "def add(a, b):\n    "


@pytest.fixture
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        server.set_reply(CLOUD_REPLY)
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project whose remote the policy labels public."""
    root = tmp_path / "docs"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "remote", "add", "origin", "git@github.com:acme/docs.git")
    (root / "add.py").write_text(SOURCE)
    return root


@pytest.fixture
def server_env(tmp_path: Path, default_model: Path) -> dict[str, str]:
    """This server's own data dir and (absent) trust root; the run's model cache."""
    return {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "no-trust-root.json"),
    }


async def start(
    server_env: dict[str, str], repo: Path, policy: Path, journal_dir: Path
) -> LanguageClient:
    """Start ``onbox serve`` with a local policy and ``journal.dir``; wait for the model."""
    config = ClientServerConfig(
        server_command=SERVER_COMMAND, client_factory=make_client, server_env=server_env
    )
    client = cast(LanguageClient, await config.start())
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=repo.as_uri(),
            initialization_options={
                "policy": {"path": str(policy)},
                "journal": {"dir": str(journal_dir)},
                "completion": {"maxTokens": 24, "debounceMs": 0},
            },
        )
    )
    assert (await wait_ready(client))["state"] == "ready"
    return client


async def stop(client: LanguageClient) -> None:
    """Shut the server down cleanly."""
    await client.shutdown_session()
    await client.stop()  # type: ignore[no-untyped-call]


async def menu_completion(client: LanguageClient, uri: str) -> types.CompletionItem:
    """The single Onbox item of a completion menu at the end of :data:`SOURCE`."""
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=4),
        )
    )
    assert isinstance(result, types.CompletionList) and len(result.items) == 1, result
    return result.items[0]


def write_policy(tmp_path: Path, cloud: RecordingServer) -> Path:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(url=cloud.url))
    return policy


async def test_unopenable_journal_is_shown_and_nothing_leaves(
    tmp_path: Path, server_env: dict[str, str], cloud: RecordingServer, repo: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the journal's parent directory should be\n")
    journal_dir = blocker / "journal"

    client = await start(server_env, repo, write_policy(tmp_path, cloud), journal_dir)
    try:
        shown = await wait_for_message(client, lambda m: "journal" in m)
        assert "cannot be opened" in shown and "nothing will leave this machine" in shown
        assert str(blocker) in shown

        uri = (repo / "add.py").as_uri()
        open_doc(client, uri, SOURCE)
        status = await wait_for_status(client, lambda p: p.get("uri") == uri and "label" in p)
        assert status["label"] == "public" and status["destination"] == "on-box", status
        assert part(status["journal"], "ok") is False and part(status["journal"], "error")

        item = await menu_completion(client, uri)
        assert item.detail == "Onbox · public · on-box"
        assert item.text_edit is not None and item.text_edit.new_text.strip()

        health = await request(client, "onbox/health", {})
        assert health.journal.writable is False and "not-a-directory" in health.journal.error
    finally:
        await stop(client)

    assert cloud.requests == []
    assert blocker.is_file() and not journal_dir.exists()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs to fill up; skips where this sandbox may not mount one."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "onbox-e2e", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def fill(directory: Path) -> int:
    """Write zeros into ``directory`` until its file system says ENOSPC; bytes written."""
    total = 0
    chunk = bytes(64 * 1024)
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                total += os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return total


async def test_journal_that_fills_up_mid_session_stops_egress(
    tmp_path: Path,
    server_env: dict[str, str],
    cloud: RecordingServer,
    repo: Path,
    small_tmpfs: Path,
) -> None:
    journal_dir = small_tmpfs / "journal"
    client = await start(server_env, repo, write_policy(tmp_path, cloud), journal_dir)
    try:
        uri = (repo / "add.py").as_uri()
        open_doc(client, uri, SOURCE)
        await wait_for_status(client, lambda p: p.get("uri") == uri and "label" in p)
        first = await menu_completion(client, uri)
        assert first.detail == "Onbox · public · selfhosted" and len(cloud.requests) == 1

        assert fill(small_tmpfs) > 0
        # The segment's last page may still have room for a short entry: acceptances
        # use it up until the journal reports the disk full (an egress entry is longer).
        assert first.command is not None and first.command.arguments
        completion_id = part(first.command.arguments[0], "completionId")
        accept = {"completionId": completion_id, "uri": uri, "how": "whole"}
        for _ in range(32):
            recorded = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="onbox.accept", arguments=[accept])
            )
            if not part(recorded, "recorded"):
                break
        else:
            pytest.fail("the journal kept accepting entries on a full disk")

        second = await menu_completion(client, uri)
        assert second.detail == "Onbox · public · on-box"
        assert len(cloud.requests) == 1
        shown = await wait_for_message(client, lambda m: "nothing was sent" in m)
        assert "journal" in shown and "selfhosted" in shown
        status = await wait_for_status(
            client, lambda p: p.get("uri") == uri and part(p.get("journal"), "ok") is False
        )
        assert status["label"] == "public" and status["destination"] == "on-box", status
    finally:
        await stop(client)
    (small_tmpfs / "filler").unlink()

    entries = list(iter_entries(journal_dir))
    egress = [e for e in entries if e["kind"] == "egress"]
    assert len(egress) == 1
    assert egress[0]["body"]["promptSha256"] == cloud.requests[0].sha256
    # The premise of the acceptance loop: an egress entry needs more room than one.
    accepted = [e for e in entries if e["kind"] == "acceptance"]
    assert accepted and len(json.dumps(egress[0])) > max(len(json.dumps(a)) for a in accepted)
