"""Routing through the real ``onbox serve``: public code may leave, restricted code never does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from tests.e2e.lsp_support import (
    ROUTING_POLICY,
    SERVER_COMMAND,
    git,
    inline_params,
    make_client,
    open_doc,
    request,
    wait_for_status,
    wait_ready,
)
from tests.support.recording_server import RecordingServer

pytestmark = [pytest.mark.model, pytest.mark.slow]

POLICY = ROUTING_POLICY.replace("{policy_id}", "e2e-routing")

CANARY = "CANARY_RESTRICTED_7f3a"


@pytest.fixture
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        server.set_reply("return a + b")
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "secret").mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "remote", "add", "origin", "git@github.com:acme/docs.git")
    (root / ".gitattributes").write_text("secret/** onbox-label=restricted\n")
    (root / "add.py").write_text("def add(a, b):\n    ")
    (root / "secret" / "keys.py").write_text(f"# {CANARY}\ndef sign(a, b):\n    ")
    return root


async def test_public_file_goes_to_selfhosted_restricted_stays_on_box(
    tmp_path: Path, cloud: RecordingServer, repo: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(url=cloud.url))
    journal_dir = tmp_path / "journal"
    config = ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client)
    client: LanguageClient = await config.start()
    try:
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

        public_uri = (repo / "add.py").as_uri()
        open_doc(client, public_uri, (repo / "add.py").read_text())
        status: dict[str, Any] = await wait_for_status(
            client, lambda p: p.get("uri") == public_uri and "label" in p
        )
        assert status["label"] == "public" and status["destination"] == "selfhosted"
        result = await client.text_document_inline_completion_async(inline_params(public_uri, 1, 4))
        assert result is not None and result.items and result.items[0].insert_text == "return a + b"
        assert len(cloud.requests) == 1
        sent = cloud.requests[0]

        secret_uri = (repo / "secret" / "keys.py").as_uri()
        open_doc(client, secret_uri, (repo / "secret" / "keys.py").read_text())
        status = await wait_for_status(
            client, lambda p: p.get("uri") == secret_uri and "label" in p
        )
        assert status["label"] == "restricted" and status["destination"] == "on-box"
        await client.text_document_inline_completion_async(inline_params(secret_uri, 2, 4))
        # The public request again, now with the restricted file open: its text must not ride along as context.
        await client.text_document_inline_completion_async(inline_params(public_uri, 1, 4))
        assert len(cloud.requests) == 2
        for recorded in cloud.requests:
            assert CANARY.encode() not in recorded.body

        explain = await request(client, "onbox/explain", {"uri": secret_uri})
        assert "restricted" in explain.text and "selfhosted" in explain.text
    finally:
        await client.shutdown_session()
        await client.stop()

    entries = list(iter_entries(journal_dir))
    egress = [e for e in entries if e["kind"] == "egress"]
    assert len(egress) == 2
    for entry in entries:
        if entry["kind"] in ("egress", "completion"):
            actor = entry["body"]["actor"]
            assert actor["osUser"] and actor["host"]
    assert egress[0]["body"]["promptSha256"] == sent.sha256
    completions = [e["body"] for e in entries if e["kind"] == "completion"]
    assert {c["destination"]["name"] for c in completions} == {"selfhosted", "on-box"}
    assert any(e["kind"] == "server-start" for e in entries) and any(
        e["kind"] == "server-stop" for e in entries
    )
