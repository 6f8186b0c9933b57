"""The ``openai`` destination against a real OpenAI-compatible server on loopback.

llama-cpp-python's own server (``python -m llama_cpp.server``) serves the embedded
default model; the tests send FIM and chat requests, stream them, cancel one mid-stream
and route an internal document to it through the :class:`Router`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from onbox.audit import iter_entries, open_journal
from onbox.classification.decision import Decision, Reason
from onbox.classification.labels import LabelScale
from onbox.classification.policy import builtin_policy
from onbox.classification.policy_model import DestinationConfig
from onbox.inference.destination import CancelToken, Completion, CompletionRequest
from onbox.inference.errors import Cancelled
from onbox.inference.openai_compat import OpenAIDestination
from onbox.inference.routing import DocumentView, RequestSettings, Router

pytest.importorskip("llama_cpp.server.app", reason="needs pip install 'llama-cpp-python[server]'")

pytestmark = [pytest.mark.model, pytest.mark.slow]

SCALE = LabelScale()
ALIAS = "onbox-default"
REQUEST = CompletionRequest(
    prefix="def add(a, b):\n    ",
    suffix="\n\nprint(add(1, 2))\n",
    language="python",
    path="calc.py",
    max_tokens=8,
    temperature=0.0,
)


#: ``python -m llama_cpp.server``, loading the model as Onbox's worker does on this CPU:
#: llama.cpp's AMX weight repacking crashes the default model mid-generation on AMX CPUs
#: (Sapphire Rapids and later), and the server has no option to turn it off.
SERVE = """
import sys
from llama_cpp.server.__main__ import main
from onbox.inference.local import model_params_override
from onbox.inference.worker_profiles import amx_flags, cpu_flags
sys.argv[0] = "llama_cpp.server"
with model_params_override(use_extra_bufts=not amx_flags(cpu_flags())):
    main()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start llama_cpp.server on a free loopback port; yield its base URL (``.../v1``)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                "--model",
                str(default_model),
                "--model_alias",
                ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--n_threads",
                "2",
                "--verbose",
                "false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(url: str, **kw: Any) -> DestinationConfig:
    fields: dict[str, Any] = {
        "name": "corp",
        "kind": "openai",
        "clearance": SCALE.parse("internal"),
        "base_url": url,
        "model": ALIAS,
        "timeout": 120.0,
        "fim": True,
    }
    fields.update(kw)
    return DestinationConfig(**fields)


def test_fim_completion_from_a_real_server(llama_server: str) -> None:
    with OpenAIDestination(config(llama_server), api_key=None) as dest:
        deltas: list[str] = []
        completion = dest.complete(REQUEST, CancelToken(), on_delta=deltas.append)
    assert completion.text and completion.text == "".join(deltas)
    assert completion.model == ALIAS  # parsed from the server's own stream
    assert completion.finish_reason in ("stop", "length")
    assert completion.bytes_sent > 0 and completion.bytes_received > 0


def test_chat_hole_filling_from_a_real_server(llama_server: str) -> None:
    with OpenAIDestination(config(llama_server, fim=False), api_key=None) as dest:
        deltas: list[str] = []
        completion = dest.complete(REQUEST, CancelToken(), on_delta=deltas.append)
    assert "".join(deltas).strip()  # the model streamed some text
    assert "<FILL_HERE>" not in completion.text and "```" not in completion.text


def test_cancel_mid_stream_then_the_server_still_answers(llama_server: str) -> None:
    cancel = CancelToken()
    long = CompletionRequest(
        prefix=REQUEST.prefix, suffix=REQUEST.suffix, max_tokens=200, temperature=0.0
    )
    with OpenAIDestination(config(llama_server), api_key=None) as dest:
        with pytest.raises(Cancelled):
            dest.complete(long, cancel, on_delta=lambda _t: cancel.cancel("superseded"))
        again = dest.complete(REQUEST, CancelToken())
    assert again.text


class _OnBox:
    name, kind, clearance = "on-box", "llama-cpp", "restricted"

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        raise AssertionError("the real server should have answered")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


def test_router_sends_an_internal_file_to_the_real_server(
    llama_server: str, tmp_path: Path
) -> None:
    internal = SCALE.parse("internal")
    decision = Decision(internal, (Reason("repo-tag", internal, "tag acme"),), "p", path="calc.py")
    text = REQUEST.prefix + REQUEST.suffix
    doc = DocumentView(
        "file:///r/calc.py", "calc.py", text, len(REQUEST.prefix), "python", decision
    )
    journal = open_journal(tmp_path / "journal", device_key_dir=tmp_path / "keys")
    with OpenAIDestination(config(llama_server), api_key=None) as corp:
        base = builtin_policy()
        policy = replace(
            base,
            destinations={**base.destinations, "corp": config(llama_server)},
            routes={**base.routes, "internal": ("corp", "on-box")},
        )
        router = Router(policy, {"corp": corp, "on-box": _OnBox()}, journal)
        routed = router.complete(
            doc, [], RequestSettings(max_tokens=8, temperature=0.0), CancelToken()
        )
    journal.close()
    assert routed.destination == "corp" and routed.completion.text
    [entry] = [e for e in iter_entries(tmp_path / "journal") if e.get("kind") == "egress"]
    assert entry["body"]["promptSha256"] == routed.prompt_sha256 == routed.completion.prompt_sha256
