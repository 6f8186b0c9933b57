"""The ``openai`` and ``anthropic`` destinations against a recording loopback server.

Each test sends real HTTP to :mod:`tests.support.recording_server` and checks what
arrived on the wire and how failures map onto :mod:`onbox.inference.errors`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from onbox.classification.labels import LabelScale
from onbox.classification.policy_model import DestinationConfig
from onbox.inference.anthropic import AnthropicDestination
from onbox.inference.destination import CancelToken, CompletionRequest, ContextSnippet
from onbox.inference.errors import (
    Cancelled,
    DestinationProtocolError,
    DestinationTimeout,
    DestinationUnavailable,
)
from onbox.inference.openai_compat import OpenAIDestination
from onbox.inference.remote import (
    HOLE,
    parse_retry_after,
    resolve_api_key,
    unwrap_chat_answer,
)
from tests.support.recording_server import Fault, RecordingServer

SCALE = LabelScale()
KEY = "sk-test-NEVER-LOG-THIS-0123456789"
REQUEST = CompletionRequest(
    prefix="def total(xs):\n    ",
    suffix="\n\nprint(total([1]))\n",
    language="python",
    path="app/calc.py",
    context=(ContextSnippet("app/util.py", "def helper():\n    pass\n", "public"),),
    max_tokens=16,
    stop=("\n\n",),
)


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


_OPEN: list[OpenAIDestination | AnthropicDestination] = []


@pytest.fixture(autouse=True)
def _fresh(server: RecordingServer) -> Iterator[None]:
    server.clear()
    server.set_default(Fault.OK)
    server.set_reply("return sum(xs)\n")
    yield
    while _OPEN:
        _OPEN.pop().close()


def openai(cfg: DestinationConfig, key: str | None = KEY) -> OpenAIDestination:
    dest = OpenAIDestination(cfg, api_key=key)
    _OPEN.append(dest)
    return dest


def anthropic(cfg: DestinationConfig, key: str | None = KEY) -> AnthropicDestination:
    dest = AnthropicDestination(cfg, api_key=key)
    _OPEN.append(dest)
    return dest


def config(url: str, **kw: Any) -> DestinationConfig:
    base = DestinationConfig(
        name="corp",
        kind="openai",
        clearance=SCALE.parse("internal"),
        base_url=url + "/v1",
        model="m",
        api_key_env="ONBOX_TEST_KEY",
        timeout=5.0,
        fim=True,
    )
    return replace(base, **kw)


def test_fim_request_goes_to_completions_with_suffix(server: RecordingServer) -> None:
    dest = openai(config(server.url))
    completion = dest.complete(REQUEST, CancelToken())
    assert completion.text == "return sum(xs)\n"
    [sent] = server.requests
    assert sent.path == "/v1/completions"
    body = sent.json()
    assert body["prompt"].endswith(REQUEST.prefix) and "# file: app/util.py" in body["prompt"]
    assert body["suffix"] == REQUEST.suffix
    assert body["stream"] is True and body["max_tokens"] == 16 and body["stop"] == ["\n\n"]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert completion.prompt_sha256 == sent.sha256
    assert completion.bytes_sent == len(sent.body)


def test_chat_hole_filling_when_fim_is_off(server: RecordingServer) -> None:
    server.set_reply("```python\nreturn sum(xs)\n```")
    dest = openai(config(server.url, fim=False))
    completion = dest.complete(REQUEST, CancelToken())
    [sent] = server.requests
    assert sent.path == "/v1/chat/completions"
    messages = sent.json()["messages"]
    assert messages[0]["role"] == "system"
    assert f"{REQUEST.prefix}{HOLE}{REQUEST.suffix}" in messages[1]["content"]
    assert completion.text == "return sum(xs)"


def test_azure_uses_api_version_query_and_api_key_header(server: RecordingServer) -> None:
    url = server.url + "/openai/deployments/coder"
    cfg = config(server.url, base_url=url, api_version="2024-06-01", fim=False)
    openai(cfg).complete(REQUEST, CancelToken())
    [sent] = server.requests
    assert sent.path == "/openai/deployments/coder/chat/completions?api-version=2024-06-01"
    assert sent.headers["api-key"] == KEY
    assert "Authorization" not in sent.headers


def test_extra_headers_from_the_policy_are_sent(server: RecordingServer) -> None:
    cfg = config(server.url, headers={"X-Team": "payments"})
    openai(cfg).complete(REQUEST, CancelToken())
    assert server.requests[0].headers["X-Team"] == "payments"


def test_anthropic_messages_api(server: RecordingServer) -> None:
    cfg = config(server.url, kind="anthropic", base_url=server.url, model="claude-haiku-4-5")
    completion = anthropic(cfg).complete(REQUEST, CancelToken())
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    body = sent.json()
    assert body["model"] == "claude-haiku-4-5" and body["stream"] is True
    assert HOLE in body["messages"][0]["content"] and body["stop_sequences"] == ["\n\n"]
    assert completion.text == "return sum(xs)\n"
    assert completion.finish_reason == "stop" and completion.tokens_out == 3


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_500_is_unavailable(server: RecordingServer, kind: str) -> None:
    server.push(Fault.STATUS_500)
    with pytest.raises(DestinationUnavailable, match="HTTP 500"):
        _dest(server, kind).complete(REQUEST, CancelToken())


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_429_carries_retry_after(server: RecordingServer, kind: str) -> None:
    server.push(Fault.RATE_LIMITED, retry_after=7)
    with pytest.raises(DestinationUnavailable) as info:
        _dest(server, kind).complete(REQUEST, CancelToken())
    assert info.value.retry_after == 7.0


def test_no_answer_is_a_timeout(server: RecordingServer) -> None:
    server.push(Fault.TIMEOUT)
    with pytest.raises(DestinationTimeout, match="did not answer"):
        _dest(server, "openai", timeout=0.3).complete(REQUEST, CancelToken())


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_body_that_stalls_midway_is_a_timeout(server: RecordingServer, kind: str) -> None:
    server.push(Fault.STALL)
    seen: list[str] = []
    with pytest.raises(DestinationTimeout):
        _dest(server, kind, timeout=0.3).complete(REQUEST, CancelToken(), on_delta=seen.append)
    assert seen == ["retu"]  # the first event arrived before the stall


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_invalid_json_is_a_protocol_error(server: RecordingServer, kind: str) -> None:
    server.push(Fault.INVALID_JSON)
    with pytest.raises(DestinationProtocolError, match="invalid JSON"):
        _dest(server, kind).complete(REQUEST, CancelToken())


def test_connection_dropped_midway_is_unavailable(server: RecordingServer) -> None:
    server.push(Fault.DROP)
    with pytest.raises(DestinationUnavailable, match="broke off"):
        _dest(server, "openai").complete(REQUEST, CancelToken())


def test_connection_refused_is_unavailable() -> None:
    with RecordingServer() as gone:
        url = gone.url
    with pytest.raises(DestinationUnavailable, match="cannot be reached"):
        openai(config(url)).complete(REQUEST, CancelToken())


def test_cancel_mid_stream_closes_the_request(server: RecordingServer) -> None:
    """The server stalls for 30 s after the first event; cancelling must end it at once
    (a DestinationTimeout after 20 s would mean the cancel was not noticed)."""
    server.push(Fault.STALL)
    cancel = CancelToken()
    dest = _dest(server, "openai", timeout=20.0)
    with pytest.raises(Cancelled):
        dest.complete(REQUEST, cancel, on_delta=lambda _text: cancel.cancel("superseded"))


def test_cancel_from_another_thread_wakes_a_blocked_read(server: RecordingServer) -> None:
    server.push(Fault.STALL)
    cancel = CancelToken()
    first = threading.Event()
    dest = _dest(server, "anthropic", timeout=20.0)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            dest.complete(REQUEST, cancel, on_delta=lambda _t: first.set())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert first.wait(10)
    cancel.cancel()
    worker.join(15)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


def test_cancelled_before_sending_sends_nothing(server: RecordingServer) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        _dest(server, "openai").complete(REQUEST, cancel)
    assert server.requests == []


def test_untrusted_certificate_is_refused_and_a_ca_bundle_fixes_it() -> None:
    with RecordingServer(tls=True) as tls:
        with pytest.raises(DestinationUnavailable, match="TLS certificate did not verify"):
            openai(config(tls.url)).complete(REQUEST, CancelToken())
        assert tls.requests == []
        trusted = openai(config(tls.url, ca_bundle=tls.ca_file))
        assert trusted.complete(REQUEST, CancelToken()).text == "return total\n"
        assert len(tls.requests) == 1


def test_missing_key_fails_without_sending(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONBOX_TEST_KEY", raising=False)
    cfg = config(server.url)
    dest = openai(cfg, resolve_api_key(cfg))
    with pytest.raises(DestinationUnavailable, match="ONBOX_TEST_KEY"):
        dest.complete(REQUEST, CancelToken())
    assert server.requests == []


def test_key_comes_from_the_environment_and_never_shows(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ONBOX_TEST_KEY", KEY)
    cfg = config(server.url)
    dest = openai(cfg, resolve_api_key(cfg))
    server.push(Fault.STATUS_500)
    caplog.set_level("DEBUG")
    with pytest.raises(DestinationUnavailable) as info:
        dest.complete(REQUEST, CancelToken())
    dest.complete(REQUEST, CancelToken())
    assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    shown = " ".join([repr(dest), str(dest.describe()), str(info.value), caplog.text])
    assert KEY not in shown


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_chat_answers_are_unwrapped() -> None:
    assert unwrap_chat_answer("```py\nx = 1\n```") == "x = 1"
    assert unwrap_chat_answer(f"x{HOLE} = 1") == "x = 1"


def _dest(
    server: RecordingServer, kind: str, timeout: float = 5.0
) -> OpenAIDestination | AnthropicDestination:
    if kind == "anthropic":
        cfg = config(server.url, kind="anthropic", base_url=server.url, timeout=timeout)
        return anthropic(cfg)
    return openai(config(server.url, timeout=timeout))


def test_a_keyring_entry_without_the_keyring_package_means_no_key(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # as if onbox[keyring] were not installed
    cfg = config(server.url, api_key_env=None, api_key_keyring="onbox:corp")
    assert resolve_api_key(cfg) is None
    assert "pip install 'onbox[keyring]'" in caplog.text
    with pytest.raises(DestinationUnavailable, match="onbox:corp"):
        openai(cfg, None).complete(REQUEST, CancelToken())
    assert server.requests == []


def test_a_service_without_a_key_gets_no_auth_header(server: RecordingServer) -> None:
    openai(config(server.url, api_key_env=None), None).complete(REQUEST, CancelToken())
    assert "Authorization" not in server.requests[0].headers


def test_a_json_answer_without_streaming_is_accepted() -> None:
    """Some services ignore ``stream``; the plain JSON answer still works."""
    with RecordingServer() as plain:
        plain.set_reply("x = 1")
        dest = openai(config(plain.url))
        prepared = dest.prepare(REQUEST)
        body = prepared.body.replace(b'"stream":true', b'"stream":false')
        unstreamed = type(prepared)(prepared.url, body, prepared.headers, prepared.chat)
        assert dest.send(unstreamed, CancelToken()).text == "x = 1"


def test_the_policy_proxy_is_used(server: RecordingServer) -> None:
    """The recording server stands in for a forward proxy: it sees the absolute URL."""
    cfg = config(
        "http://llm.corp.example", proxy=server.url, allow_plain_http=True, api_key_env=None
    )
    assert openai(cfg, None).complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    assert server.requests[0].path == "http://llm.corp.example/v1/completions"


def test_proxies_from_the_environment_are_ignored(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RecordingServer() as env_proxy:
        for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, env_proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        openai(config(server.url)).complete(REQUEST, CancelToken())
        assert env_proxy.requests == []
    assert len(server.requests) == 1


def test_describe_never_shows_credentials_in_the_endpoint(server: RecordingServer) -> None:
    dest = openai(config("https://bob:hunter2@llm.corp.example"))
    assert dest.describe()["endpoint"] == "https://llm.corp.example/v1"
    assert "hunter2" not in repr(dest.describe()) + repr(dest)
