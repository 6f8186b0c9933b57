"""Helpers for driving the real ``onbox serve`` with pytest-lsp."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

from tests.support.policies import PolicyBuilder
from tests.support.repos import git as git  # the e2e tests import it from here

SERVER_COMMAND = [sys.executable, "-m", "onbox", "serve"]


def make_client() -> LanguageClient:
    """A pytest-lsp client that records ``onbox/status`` notifications."""
    client = make_test_lsp_client()
    client.statuses = []  # type: ignore[attr-defined]
    client.status_event = asyncio.Event()  # type: ignore[attr-defined]

    @client.feature("onbox/status")
    def on_status(ls: LanguageClient, params: Any) -> None:
        payload = params._asdict() if hasattr(params, "_asdict") else dict(params)
        ls.statuses.append(payload)  # type: ignore[attr-defined]
        ls.status_event.set()  # type: ignore[attr-defined]

    return client


async def wait_for_status(
    client: LanguageClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120.0
) -> dict[str, Any]:
    """Wait until an ``onbox/status`` notification satisfies ``predicate``."""
    seen = 0

    async def _wait() -> dict[str, Any]:
        nonlocal seen
        while True:
            statuses = client.statuses  # type: ignore[attr-defined]
            for payload in statuses[seen:]:
                if predicate(payload):
                    return dict(payload)
            seen = len(statuses)
            client.status_event.clear()  # type: ignore[attr-defined]
            await client.status_event.wait()  # type: ignore[attr-defined]

    return await asyncio.wait_for(_wait(), timeout)


async def wait_ready(client: LanguageClient) -> dict[str, Any]:
    """Wait for the server-wide status that says the model finished loading (or failed)."""
    return await wait_for_status(
        client, lambda p: p.get("uri") is None and p.get("state") in ("ready", "disabled")
    )


def open_doc(
    client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1
) -> None:
    """Send ``textDocument/didOpen``."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=version, text=text
            )
        )
    )


def change_doc(
    client: LanguageClient, uri: str, version: int, line: int, char: int, insert: str
) -> None:
    """Send an incremental ``didChange`` inserting ``insert`` at (line, char)."""
    pos = types.Position(line=line, character=char)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=pos, end=pos), text=insert
                )
            ],
        )
    )


def inline_params(uri: str, line: int, char: int) -> types.InlineCompletionParams:
    """Parameters of an automatic inline completion request."""
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=char),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )


async def request(client: LanguageClient, method: str, params: Any) -> Any:
    """Send a custom request and await its result."""
    return await client.protocol.send_request_async(method, params)


def part(payload: Any, key: str) -> Any:
    """``payload[key]`` for a dict or a pygls ``Object`` (nested JSON objects arrive as those)."""
    if isinstance(payload, dict):
        return payload.get(key)
    return getattr(payload, key, None)


async def wait_for_message(
    client: LanguageClient, predicate: Callable[[str], bool], timeout: float = 30.0
) -> str:
    """Wait until a ``window/showMessage`` whose text satisfies ``predicate`` arrives."""

    async def _wait() -> str:
        seen = 0
        while True:
            for params in client.messages[seen:]:
                if predicate(params.message):
                    return str(params.message)
            seen = len(client.messages)
            # Registered before yielding to the loop, so no message can slip past.
            await client.protocol.wait_for_notification_async(types.WINDOW_SHOW_MESSAGE)

    return await asyncio.wait_for(_wait(), timeout)


#: A policy whose public repo (github.com/acme/docs) may go to a loopback OpenAI-compatible
#: "selfhosted" destination at ``{url}``; everything else stays on-box.
ROUTING_POLICY = (
    PolicyBuilder("{policy_id}")
    .repo("github.com/acme/docs", "public")
    .destination(
        "selfhosted",
        kind="openai",
        base_url="{url}/v1",
        model="loopback-coder",
        clearance="public",
        fim=True,
        timeout=5.0,
    )
    .route("public", "selfhosted")
    .toml()
)
