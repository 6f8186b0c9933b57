"""Through ``onbox serve``: a model worker that segfaults costs one empty answer, not the server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from tests.e2e.lsp_support import (
    SERVER_COMMAND,
    inline_params,
    make_client,
    open_doc,
    part,
    request,
    wait_for_message,
    wait_for_status,
    wait_ready,
)
from tests.support.workers import profile_ladder, stop_workers

pytestmark = pytest.mark.model

SOURCE = "def add(a, b):\n    "
LADDER = profile_ladder()  # configured, then no-extra-buffers (cpu-only on AMX), …
SAFER = LADDER[1]  # where a crash of the configured profile steps down to


@pytest.fixture
def crash_env(
    tmp_path: Path, default_model: Path, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Private journal, cache (profile memory) and runtime dir for the server and its workers."""
    runtime = tempfile.mkdtemp(prefix="ob-", dir="/tmp")
    cache = tmp_path / "cache"
    cache.mkdir()
    if (model_cache_dir / "model-hashes.json").exists():
        shutil.copy(model_cache_dir / "model-hashes.json", cache / "model-hashes.json")
    monkeypatch.setenv("ONBOX_RUNTIME_DIR", runtime)
    monkeypatch.setenv("ONBOX_CACHE_DIR", str(cache))
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path
    stop_workers(runtime)
    shutil.rmtree(runtime, ignore_errors=True)


async def _start(default_model: Path, editor: str) -> LanguageClient:
    config = ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client)
    client: LanguageClient = await config.start()
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(editor),
            initialization_options={
                "model": {"path": str(default_model)},
                "completion": {"maxTokens": 16, "debounceMs": 0},
            },
        )
    )
    assert (await wait_ready(client))["state"] == "ready"
    return client


async def _complete(client: LanguageClient, uri: str) -> str:
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, 4))
    items: list[Any] = list(result.items) if result else []
    return str(items[0].insert_text) if items else ""


@pytest.mark.parametrize("editor", ["neovim", "visual-studio-code"])
async def test_segfault_in_the_worker_costs_one_empty_answer(
    crash_env: Path, default_model: Path, monkeypatch: pytest.MonkeyPatch, editor: str
) -> None:
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "segv-on-decode@configured")
    client = await _start(default_model, editor)
    try:
        uri = (crash_env / "add.py").as_uri()
        open_doc(client, uri, SOURCE)
        assert await _complete(client, uri) == "", "the crashed request answers empty"
        message = await wait_for_message(client, lambda m: "SIGSEGV" in m)
        assert SAFER in message  # what Onbox did about it
        # the server is alive and the next completion is served by a restarted worker
        assert (await _complete(client, uri)).startswith("return a + b")
        health = await request(client, "onbox/health", {})
        model = part(health, "model")
        assert part(part(model, "profile"), "name") == SAFER
        assert part(model, "crashes") == 1 and part(model, "state") == "ready"
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1, [m.message for m in client.messages]
    finally:
        await client.shutdown_session()
        await client.stop()
    entries = list(iter_entries(crash_env / "data" / "journal"))
    crashed = [e["body"] for e in entries if e["kind"] == "model-crashed"]
    assert len(crashed) == 1
    assert crashed[0]["cause"] == "SIGSEGV" and crashed[0]["profile"] == "configured"
    served = [e["body"] for e in entries if e["kind"] == "completion"]
    assert [b["outcome"] for b in served][:1] == ["error"]
    workers = {b["destination"].get("workerPid") for b in served}
    assert len(workers) == 2 and crashed[0]["pid"] in workers  # which worker served each


async def test_repeated_crashes_leave_the_model_unavailable(
    crash_env: Path, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONBOX_WORKER_FAULT", "segv-on-decode")
    client = await _start(default_model, "neovim")
    try:
        uri = (crash_env / "add.py").as_uri()
        open_doc(client, uri, SOURCE)
        for _ in LADDER:
            assert await _complete(client, uri) == ""
        status = await wait_for_status(
            client,
            lambda p: (
                p.get("state") == "disabled" and f"crashed {len(LADDER)} times" in p["message"]
            ),
        )
        assert "see onbox doctor" in status["message"]
        assert await _complete(client, uri) == ""  # answered at once, no new worker
        health = await request(client, "onbox/health", {})
        assert part(part(health, "model"), "crashes") == len(LADDER)
        crashed = [m for m in client.messages if "crashed with SIGSEGV" in m.message]
        assert len(crashed) == len(LADDER)
    finally:
        await client.shutdown_session()
        await client.stop()
