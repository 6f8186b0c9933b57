"""A missing, corrupt or unsupported model: one clear error, a live server, empty answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.lsp_support import (
    SERVER_COMMAND,
    inline_params,
    make_client,
    open_doc,
    request,
    wait_ready,
)


def _write_bad_models(root: Path) -> dict[str, Path]:
    corrupt = root / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\xff" * 4096)
    not_gguf = root / "weights.bin"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    future = root / "future.gguf"
    future.write_bytes(b"GGUF" + (99).to_bytes(4, "little") + b"\x00" * 64)
    return {
        "missing": root / "does-not-exist.gguf",
        "corrupt": corrupt,
        "not_gguf": not_gguf,
        "unsupported": future,
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "not_gguf", "unsupported"])
async def test_bad_model_gives_one_clear_error_and_a_live_server(tmp_path: Path, case: str) -> None:
    model = _write_bad_models(tmp_path)[case]
    config = ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client)
    client: LanguageClient = await config.start()
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("neovim"),
                initialization_options={"model": {"path": str(model)}},
            )
        )
        status = await wait_ready(client)
        assert status["state"] == "disabled"
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1, [m.message for m in client.messages]
        message = errors[0].message
        assert str(model) in message  # names the file
        assert (
            "onbox.model.path" in message or "re-" in message or "convert" in message
        )  # and the fix

        uri = (tmp_path / "a.py").as_uri()
        open_doc(client, uri, "def f():\n    ")
        result = await client.text_document_inline_completion_async(inline_params(uri, 1, 4))
        assert result is None or not result.items
        health = await request(client, "onbox/health", {})
        assert health.model.loaded is False and str(model) in health.model.error
        # Still exactly one error after more requests.
        await client.text_document_inline_completion_async(inline_params(uri, 1, 4))
        assert len([m for m in client.messages if m.type == types.MessageType.Error]) == 1
    finally:
        await client.shutdown_session()
        await client.stop()
