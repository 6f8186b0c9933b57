"""End to end: the real ``onbox serve`` and the real default model, through a real LSP client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.lsp_support import (
    SERVER_COMMAND,
    change_doc,
    inline_params,
    make_client,
    open_doc,
    request,
    wait_for_status,
    wait_ready,
)

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FUNCTION = '''def fizzbuzz(n):
    """Return "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for both, else the number."""
    '''


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client),
    params=["neovim", "visual-studio-code"],
    scope="module",
)
async def client(
    lsp_client: LanguageClient,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """A server with the default model, initialised like the named editor (real capability sets)."""
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(str(request.param)),
            root_uri=tmp_path_factory.mktemp("root").as_uri(),
            initialization_options={"completion": {"maxTokens": 48, "debounceMs": 0}},
        )
    )
    status = await wait_ready(lsp_client)
    assert status["state"] == "ready", status
    yield
    await lsp_client.shutdown_session()


def set_completion(client: LanguageClient, **completion: int) -> None:
    """Push new ``onbox.completion`` settings to the running server.

    Like an editor, this sends the whole section: a key left out (``debounceMs`` unless
    given) goes back to the server's default.
    """
    section = {"debounceMs": 0, **completion}
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"onbox": {"completion": section}})
    )


def set_max_tokens(client: LanguageClient, n: int) -> None:
    """Push a new completion limit to the running server."""
    set_completion(client, maxTokens=n)


async def test_function_body_gets_multiline_completion_both_ways(
    client: LanguageClient, tmp_path: Path
) -> None:
    set_max_tokens(client, 48)
    uri = (tmp_path / "fizz.py").as_uri()
    open_doc(client, uri, FUNCTION)
    status = await wait_for_status(client, lambda p: p.get("uri") == uri and "label" in p)
    assert status["label"] == "restricted" and status["destination"] == "on-box"

    inline = await client.text_document_inline_completion_async(inline_params(uri, 2, 4))
    assert inline is not None
    items = inline.items if isinstance(inline, types.InlineCompletionList) else inline
    assert len(items) == 1
    text = items[0].insert_text
    assert isinstance(text, str) and text.strip()
    assert "\n" in text.strip(), f"expected several lines, got {text!r}"
    assert items[0].command is not None and items[0].command.command == "onbox.accept"

    menu = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=2, character=4),
        )
    )
    assert isinstance(menu, types.CompletionList) and len(menu.items) == 1
    item = menu.items[0]
    assert item.text_edit is not None and item.text_edit.new_text.strip()
    assert item.filter_text == item.text_edit.new_text
    # Greedy decoding on the same prompt: both methods insert the same suggestion.
    assert item.text_edit.new_text == text


async def test_cancel_during_generation_then_next_request_is_served(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = (tmp_path / "long.py").as_uri()
    # A list the model happily continues for hundreds of tokens.
    open_doc(client, uri, "numbers = [\n    1,\n    2,\n")
    set_max_tokens(client, 400)
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 3, 0), msg_id="cancel-me"
    )
    await wait_for_status(client, lambda p: p.get("uri") == uri and p.get("state") == "generating")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wrap_future(future)
    stats = await request(client, "onbox/health", {})
    gen = stats.generation if hasattr(stats, "generation") else stats["generation"]
    last = gen._asdict() if hasattr(gen, "_asdict") else gen
    # The token loop stopped early: far fewer tokens than the 400 allowed.
    assert last["lastFinish"] == "cancelled", last
    assert last["lastTokensOut"] < 400

    set_max_tokens(client, 32)
    served = await client.text_document_inline_completion_async(inline_params(uri, 3, 0))
    assert served is not None and len(served.items) == 1 and served.items[0].insert_text


async def test_burst_of_superseding_requests_only_newest_reaches_model(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = (tmp_path / "burst.py").as_uri()
    text = FUNCTION
    open_doc(client, uri, text)
    # The server's own burst debounce (the default is 120 ms) keeps this independent of how
    # fast a loaded machine happens to read the requests.
    set_completion(client, debounceMs=150)
    before = (await request(client, "onbox/health", {})).generation.generationsStarted
    futures = []
    for i in range(8):
        change_doc(client, uri, i + 2, 2, 4 + i, "x")
        futures.append(client.text_document_inline_completion_async(inline_params(uri, 2, 5 + i)))
    try:
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        set_completion(client, debounceMs=0)
    *older, newest = results
    assert not isinstance(newest, BaseException) and newest is not None
    for res in older:
        # superseded: an empty answer (or a cancelled error), never a suggestion
        assert isinstance(res, BaseException) or not res.items
    after = (await request(client, "onbox/health", {})).generation.generationsStarted
    assert after - before <= 2, f"{after - before} generations started for one burst"


@pytest.mark.parametrize(
    ("name", "text", "line", "char"),
    [
        ("past_eof", "x = 1\n", 40, 99),
        ("surrogate_pair", "s = '😀😀'\n", 0, 6),
        ("crlf", "def f(a):\r\n    return a\r\n\r\ndef g(b):\r\n    ", 4, 4),
        ("empty", "", 0, 0),
        ("nul_bytes", "a = '\x00\x00'\nb = ", 1, 4),
        ("negative_like", "y = 2\n", 0, 10_000),
    ],
)
async def test_odd_inputs_get_sane_answers(
    client: LanguageClient, tmp_path: Path, name: str, text: str, line: int, char: int
) -> None:
    uri = (tmp_path / f"{name}.py").as_uri()
    open_doc(client, uri, text)
    result = await client.text_document_inline_completion_async(inline_params(uri, line, char))
    assert result is None or isinstance(result, types.InlineCompletionList)
    for item in result.items if result else []:
        assert isinstance(item.insert_text, str) and "\x00" not in item.insert_text
    health = await request(client, "onbox/health", {})
    assert health.model.loaded is True


async def test_five_megabyte_file(client: LanguageClient, tmp_path: Path) -> None:
    uri = (tmp_path / "big.py").as_uri()
    body = "".join(f"value_{i} = {i} * 2\n" for i in range(250_000))
    assert len(body) > 5_000_000
    open_doc(client, uri, body + "def tail(x):\n    ")
    lines = body.count("\n")
    result = await client.text_document_inline_completion_async(inline_params(uri, lines + 1, 4))
    assert result is not None
    health = await request(client, "onbox/health", {})
    assert health.model.loaded is True
