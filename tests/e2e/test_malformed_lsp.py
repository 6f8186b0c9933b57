"""Malformed LSP traffic gets error answers (or is skipped) and never kills the server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest


class RawClient:
    """Speaks JSON-RPC over the server's stdio byte by byte, so it can send garbage too."""

    def __init__(self, stderr: IO[bytes] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onbox", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if stderr is None else stderr,
        )

    def send_raw(self, body: bytes, length: int | None = None) -> None:
        assert self.proc.stdin is not None
        n = len(body) if length is None else length
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % n + body)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode())

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("the server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))  # type: ignore[no-any-return]

    def response(self, msg_id: int, deadline: float = 60.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            message = self.read()
            if message.get("id") == msg_id and "method" not in message:
                return message
        raise TimeoutError(f"no response to {msg_id}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def raw() -> Any:
    client = RawClient()
    yield client
    client.close()


def test_garbage_then_valid_requests_are_answered(raw: RawClient, tmp_path: Any) -> None:
    raw.send_raw(b"{this is not json")
    raw.send_raw(b'{"jsonrpc": "2.0", "id": 99, "method": "initialize", "params": 7}')
    assert raw.response(99)["error"]["code"] == -32602  # answered, not left hanging
    raw.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "capabilities": {},
                "initializationOptions": {"model": {"path": str(tmp_path / "none.gguf")}},
            },
        }
    )
    init = raw.response(1)
    assert "inlineCompletionProvider" in init["result"]["capabilities"]
    raw.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    # A request with the wrong shape gets an error answer, not silence and not a crash.
    raw.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": "file:///x.py"}, "position": "top"},
        }
    )
    bad = raw.response(2)
    assert (
        bad["error"]["code"] == -32602
        and "textDocument/inlineCompletion" in bad["error"]["message"]
    )
    # A request for a document that was never opened.
    raw.send(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": "file:///never-opened.py"},
                "position": {"line": 0, "character": 0},
                "context": {"triggerKind": 2},
            },
        }
    )
    answer = raw.response(3)
    assert answer.get("error") is None and not (answer["result"] or {}).get("items")
    # An unknown method.
    raw.send({"jsonrpc": "2.0", "id": 4, "method": "onbox/doesNotExist", "params": {}})
    assert raw.response(4)["error"]["code"] == -32601
    # A change for a document that is not open, and a notification with bad params.
    raw.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": {"uri": "file:///ghost.py", "version": 2},
                "contentChanges": [{"text": "x"}],
            },
        }
    )
    raw.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": 5}})
    # Still alive and answering.
    raw.send({"jsonrpc": "2.0", "id": 5, "method": "onbox/health", "params": {}})
    health = raw.response(5)
    assert health["result"]["version"]
    raw.send({"jsonrpc": "2.0", "id": 6, "method": "shutdown"})
    assert raw.response(6).get("error") is None
    raw.send({"jsonrpc": "2.0", "method": "exit"})
    assert raw.proc.wait(timeout=30) == 0


def malformed(n: int, uri: str) -> list[dict[str, Any]]:
    """``n`` bad messages: wrong params, odd positions, unknown methods and commands."""
    kinds = [
        {
            "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": uri}, "position": "top"},
        },
        {
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": uri}, "position": {"line": -5, "character": 10**9}},
        },
        {
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": uri},
                "position": {"line": 99999, "character": 3},
                "context": {"triggerKind": 2},
            },
        },
        {"method": "textDocument/completion", "params": None},
        {"method": "onbox/doesNotExist", "params": {}},
        {"method": "onbox/explain", "params": [1, 2]},
        {"method": "onbox/journalStats", "params": {"days": "many"}},
        {
            "method": "workspace/executeCommand",
            "params": {"command": "onbox.accept", "arguments": [5]},
        },
        {"method": "workspace/executeCommand", "params": {"command": "onbox.nope"}},
        {
            "method": "textDocument/didChange",
            "notify": True,
            "params": {
                "textDocument": {"uri": "file:///ghost.py", "version": 2},
                "contentChanges": [{"text": "x"}],
            },
        },
        {"method": "textDocument/didOpen", "notify": True, "params": {"textDocument": 5}},
        {"method": "textDocument/didClose", "notify": True, "params": {}},
        {"method": "textDocument/didSave", "notify": True, "params": {"textDocument": {}}},
    ]
    out = []
    for i in range(n):
        kind = dict(kinds[i % len(kinds)])
        message: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": kind["method"],
            "params": kind["params"],
        }
        if not kind.get("notify"):
            message["id"] = 1000 + i
        out.append(message)
    return out


def test_each_malformed_message_costs_one_concise_log_line(tmp_path: Path) -> None:
    """Bad messages land in the editor's output channel: one short line each, no tracebacks."""
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        raw = RawClient(stderr)
        try:
            raw.send(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "capabilities": {},
                        "initializationOptions": {"model": {"path": str(tmp_path / "none.gguf")}},
                    },
                }
            )
            raw.response(1)
            raw.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            uri = (tmp_path / "open.py").as_uri()
            raw.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {
                        "textDocument": {
                            "uri": uri,
                            "languageId": "python",
                            "version": 1,
                            "text": "x = 1\n",
                        }
                    },
                }
            )
            raw.send({"jsonrpc": "2.0", "id": 2, "method": "onbox/health", "params": {}})
            raw.response(2)
            before = log.read_text().splitlines()

            bad = malformed(260, uri)
            for message in bad:
                raw.send(message)
            pending = {m["id"] for m in bad if "id" in m} | {3}
            raw.send({"jsonrpc": "2.0", "id": 3, "method": "onbox/health", "params": {}})
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                message = raw.read()
                if "method" not in message:
                    pending.discard(message.get("id"))
            assert not pending, f"{len(pending)} requests were not answered"
            raw.send({"jsonrpc": "2.0", "id": 4, "method": "shutdown"})
            raw.response(4)
            raw.send({"jsonrpc": "2.0", "method": "exit"})
            assert raw.proc.wait(timeout=30) == 0
        finally:
            raw.close()
    lines = log.read_text().splitlines()[len(before) :]
    assert not [line for line in lines if "Traceback" in line or line.startswith("  ")]
    assert len(lines) <= len(bad), f"{len(lines)} log lines for {len(bad)} bad messages"
    assert all(len(line) < 400 for line in lines), max(lines, key=len)
