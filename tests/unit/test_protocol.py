"""One line per bad message: what the server logs about malformed LSP traffic."""

from __future__ import annotations

import logging

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcMethodNotFound

from onbox.server.language_server import OnboxServer
from onbox.server.protocol import (
    MAX_LINE,
    AnsweredMalformedRequest,
    DuplicateTracebacks,
    OnboxProtocol,
    describe_bad_message,
    problems_of,
)


def structure_error(message: dict[str, object]) -> BaseException:
    protocol = OnboxServer().protocol
    assert isinstance(protocol, OnboxProtocol)
    sent: list[object] = []
    protocol._send_response = lambda *a, **k: sent.append((a, k))  # type: ignore[method-assign]
    with pytest.raises(Exception) as caught:
        protocol.structure_message(message)
    return caught.value


def test_a_malformed_request_is_answered_and_described_in_one_line() -> None:
    error = structure_error(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": types.TEXT_DOCUMENT_COMPLETION,
            "params": {"textDocument": {"uri": "file:///a.py"}, "position": "top"},
        }
    )
    assert isinstance(error, AnsweredMalformedRequest)
    line = describe_bad_message(error)
    assert line.startswith("answered a malformed textDocument/completion request (id 7)")
    assert "$.params.position" in line and "\n" not in line


def test_a_malformed_notification_names_the_method_and_the_field() -> None:
    error = structure_error(
        {"jsonrpc": "2.0", "method": types.TEXT_DOCUMENT_DID_OPEN, "params": {"textDocument": 5}}
    )
    line = describe_bad_message(error)
    assert line.startswith("ignored a malformed textDocument/didOpen notification: ")
    assert "$.params.text_document" in line


def test_other_errors_are_one_bounded_line() -> None:
    assert describe_bad_message(JsonRpcMethodNotFound.of("onbox/nope")).startswith(
        "answered MethodNotFound"
    )
    long = JsonRpcInternalError(message="KeyError: 'x'\n" + "y" * 2000)
    line = describe_bad_message(long)
    assert "\n" not in line and len(line) == MAX_LINE
    assert problems_of(None) == "" and problems_of(ValueError("v")) == "ValueError: v"


def test_pygls_repeats_are_dropped_unless_debugging() -> None:
    record = logging.LogRecord(
        "pygls.protocol.json_rpc",
        logging.ERROR,
        __file__,
        1,
        "Unable to deserialize message\n%s",
        ("tb",),
        None,
    )
    other = logging.LogRecord(
        "pygls.protocol.json_rpc",
        logging.WARNING,
        __file__,
        1,
        "Cancel notification for unknown message id",
        (),
        None,
    )
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.WARNING)
        assert DuplicateTracebacks().filter(record) is False
        assert DuplicateTracebacks().filter(other) is True
        root.setLevel(logging.DEBUG)
        assert DuplicateTracebacks().filter(record) is True
    finally:
        root.setLevel(level)


def test_every_handler_annotation_resolves() -> None:
    """pygls reads each handler's type hints to structure its arguments: they must resolve."""
    import typing

    from onbox.server.lsp import server

    handlers = {**server.protocol.fm.commands, **server.protocol.fm.features}
    assert "onbox.accept" in handlers and "onbox/journalStats" in handlers
    for name, handler in handlers.items():
        function = getattr(handler, "func", handler)  # pygls binds the server with partial
        hints = typing.get_type_hints(function)
        assert hints, name


def test_a_failing_request_handler_is_the_servers_fault_not_the_editors() -> None:
    """A sync request handler that raises (e.g. ``initialize`` on a half-built server) is
    reported as onbox's failure; the same exception from a notification is the editor's
    message that could not be applied (a change to a document that is not open)."""
    from pygls.exceptions import FeatureNotificationError, FeatureRequestError

    bug = AttributeError("'NoneType' object has no attribute 'router'")
    line = describe_bad_message(bug, FeatureRequestError)
    assert line.startswith("onbox failed while handling a request and answered InternalError")
    assert "bad message from the editor" not in line and "AttributeError" in line
    stale = KeyError("file:///gone.py")
    assert describe_bad_message(stale, FeatureNotificationError).startswith(
        "ignored a bad message from the editor: KeyError"
    )
