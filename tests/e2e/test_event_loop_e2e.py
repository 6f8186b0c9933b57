"""Slow requests run off the event loop, through the real ``onbox serve`` (issue 15).

Verifying a large journal checks every hash and signature, and ``onbox/journalStats``
scans every entry: seconds for a journal of a busy month. While they run, the server
must still answer everything else. The journal here is real and large (tens of thousands
of signed entries), so a verification on the event loop would hold every other answer
back until it finished: the cheap requests sent after it would then be answered after it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, cast

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import open_journal
from tests.e2e.lsp_support import SERVER_COMMAND, make_client, open_doc, part, request, wait_ready

pytestmark = pytest.mark.slow

#: Enough signed entries that verifying them takes seconds, not milliseconds.
ENTRIES = 40_000


@pytest.fixture(scope="module")
def large_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir (device keys and journal) holding :data:`ENTRIES` acceptance entries."""
    data = tmp_path_factory.mktemp("large-journal") / "data"
    journal = open_journal(data / "journal", device_key_dir=data / "keys")
    try:
        for n in range(ENTRIES):
            journal.append(
                "acceptance",
                {"completionId": f"c{n}", "uri": "file:///repo/app.py", "how": "whole"},
            )
    finally:
        journal.close()
    return data


@pytest.mark.parametrize("editor", ["visual-studio-code", "neovim"])
async def test_requests_are_answered_while_the_journal_is_verified(
    editor: str, tmp_path: Path, onbox_env: dict[str, str], large_journal: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(large_journal, data)
    config = ClientServerConfig(
        server_command=SERVER_COMMAND,
        client_factory=make_client,
        server_env={**onbox_env, "ONBOX_DATA_DIR": str(data)},
    )
    client = cast(LanguageClient, await config.start())
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities(editor),
                # No model: the completion below is answered without generating.
                initialization_options={
                    "model": {"path": str(tmp_path / "absent.gguf")},
                    "journal": {"dir": str(data / "journal")},
                    "completion": {"debounceMs": 0},
                },
            )
        )
        await wait_ready(client)
        uri = (tmp_path / "app.py").as_uri()
        open_doc(client, uri, "def add(a, b):\n    ")

        verify = asyncio.ensure_future(
            client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="onbox.verifyJournal")
            )
        )
        stats = asyncio.ensure_future(request(client, "onbox/journalStats", {"days": 30}))
        # Sent after both slow requests: answered while they still run.
        health = await request(client, "onbox/health", {})
        menu = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=1, character=4),
            )
        )
        # Verifying 40,000 signatures takes seconds; the stats scan may already be done on
        # an idle machine, so only the verification is certain to be still running.
        assert not verify.done(), "a slow request held the loop"
        assert health.version
        assert isinstance(menu, types.CompletionList) and not menu.items

        verified: Any = await asyncio.wait_for(verify, 300)
        assert part(verified, "ok") is True, verified
        assert part(verified, "entries") > ENTRIES  # plus this server's own start entry
        counted: Any = await asyncio.wait_for(stats, 300)
        assert part(counted, "error") is None, counted

        # Shutting down while a verification still runs cancels it and shuts down cleanly.
        pending = asyncio.ensure_future(
            client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="onbox.verifyJournal")
            )
        )
        await request(client, "onbox/health", {})
    finally:
        await client.shutdown_session()
        await client.stop()  # type: ignore[no-untyped-call]
    with pytest.raises(JsonRpcRequestCancelled):
        await pending
