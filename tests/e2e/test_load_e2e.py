"""While the model loads, the server keeps answering: nothing written to the LSP channel is lost."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.lsp_support import SERVER_COMMAND, make_client, request, wait_ready

pytestmark = pytest.mark.model


async def test_requests_during_model_load_are_all_answered() -> None:
    config = ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client)
    client: LanguageClient = await config.start()
    try:
        await client.initialize_session(
            types.InitializeParams(capabilities=client_capabilities("visual-studio-code"))
        )
        # Fire requests every 10 ms from initialize until the model is ready, without
        # waiting for answers, so some are answered while llama.cpp is loading.
        ready = asyncio.ensure_future(wait_ready(client))
        pending = []
        while not ready.done() or len(pending) < 5:
            pending.append(asyncio.ensure_future(request(client, "onbox/health", {})))
            await asyncio.sleep(0.01)
        answers = await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
        assert (await ready)["state"] == "ready"
        assert len(answers) >= 5 and answers[0].model.state == "loading"
        after = await asyncio.wait_for(request(client, "onbox/health", {}), timeout=30)
        assert after.model.state == "ready" and after.model.loaded is True
        # Work-done progress for the load reached the client too.
        assert client.progress_reports, "no $/progress while the model loaded"
        tokens = list(client.progress_reports.values())
        assert any(getattr(r[-1], "kind", "") == "end" for r in tokens)
    finally:
        await client.shutdown_session()
        await client.stop()
