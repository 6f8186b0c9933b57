"""Only TLS leaves the machine: plain ``http://`` destinations, redirects and API keys.

A destination whose ``base_url`` is not ``https://`` is refused unless the plain text
stays on loopback or the signed policy sets ``allow_plain_http`` (and then without an
API key). The refusal shows at ``onbox policy check`` / ``sign``, at build time (the
destination is left out) and once more right before sending. Nothing here reaches a
host other than loopback: a "remote" plain-http endpoint is simulated by sending through
a recording server that acts as the forward proxy, so a request that should never have
left would be recorded.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from onbox.classification.labels import LabelScale
from onbox.classification.policy import PolicyError, parse_policy
from onbox.classification.policy_model import DestinationConfig
from onbox.inference.anthropic import AnthropicDestination
from onbox.inference.destination import CancelToken, CompletionRequest
from onbox.inference.errors import DestinationProtocolError, DestinationUnavailable
from onbox.inference.openai_compat import OpenAIDestination
from onbox.inference.remote import (
    RemoteDestination,
    build_destinations,
    destination_refusal,
    is_loopback_host,
)
from onbox.inference.routing import RequestSettings, Router
from onbox.server.cli import EXIT_FAILED, EXIT_OK
from onbox.server.commands.policy import run_check, run_sign
from tests.support.recording_server import Fault, RecordingServer
from tests.unit.test_routing import MemoryJournal, OnBox, doc

SCALE = LabelScale()
KEY = "sk-test-NEVER-IN-CLEAR-0123456789"
REQUEST = CompletionRequest(prefix="def total(xs):\n    ", suffix="\n", language="python")


def cfg(url: str, **kw: Any) -> DestinationConfig:
    base = DestinationConfig(
        name="corp",
        kind="openai",
        clearance=SCALE.parse("internal"),
        base_url=url,
        model="m",
        timeout=5.0,
    )
    return replace(base, **kw)


# -- the URL check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://127.5.6.7/v1",
        "http://[::1]:8080/v1",
        "http://[::1]/v1",
        "http://localhost:11434/v1",
        "http://LOCALHOST/v1",
        "http://user@127.0.0.1:8080/v1",
        "https://10.0.0.5/v1",
        "https://api.openai.com/v1",
        "HTTPS://api.example/v1",
    ],
)
def test_tls_and_loopback_endpoints_are_accepted(url: str) -> None:
    assert destination_refusal(cfg(url)) is None
    assert destination_refusal(cfg(url, api_key_env="CORP_KEY")) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5",
        "http://10.0.0.5:8000/v1",
        "http://api.example/v1",
        "http://127.0.0.1.evil.com/v1",
        "http://localhost.evil.com/v1",
        "http://localhost./v1",
        "http://127.0.0.1@evil.com/v1",
        "http://127.0.0.1:8080@evil.com/v1",
        "http://evil.com\\@127.0.0.1/v1",
        "http://0.0.0.0:8080/v1",
        "http://127.1/v1",
        "http://2130706433/v1",
        "http://[::2]/v1",
        "http://[::1/v1",
        "http:///v1",
        "ftp://127.0.0.1/v1",
        "ws://api.example/v1",
        "api.example/v1",
    ],
)
def test_plain_or_odd_endpoints_elsewhere_are_refused(url: str) -> None:
    why = destination_refusal(cfg(url))
    assert why is not None
    assert "https://" in why


def test_the_refusal_says_what_to_do() -> None:
    why = destination_refusal(cfg("http://10.0.0.5:8000/v1")) or ""
    assert "plain http:// to 10.0.0.5 is refused" in why
    assert "allow_plain_http = true" in why
    assert "[destinations.corp]" in why


def test_userinfo_never_appears_in_a_refusal() -> None:
    why = destination_refusal(cfg("ftp://admin:hunter2@10.0.0.5/v1")) or ""
    assert why and "hunter2" not in why


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1.evil.com", False),
        ("localhost.evil.com", False),
        ("evil-localhost", False),
        ("10.0.0.5", False),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_allow_plain_http_opens_plain_http_for_that_destination() -> None:
    assert destination_refusal(cfg("http://api.example/v1", allow_plain_http=True)) is None
    assert destination_refusal(cfg("http://10.0.0.5:8000/v1", allow_plain_http=True)) is None


@pytest.mark.parametrize("key", [{"api_key_env": "CORP_KEY"}, {"api_key_keyring": "svc:me"}])
def test_an_api_key_never_travels_over_plain_http_even_when_allowed(key: dict[str, str]) -> None:
    why = destination_refusal(cfg("http://api.example/v1", allow_plain_http=True, **key)) or ""
    assert "API key" in why and "api.example" in why


def test_a_proxy_elsewhere_makes_a_loopback_endpoint_plain_text_on_the_network() -> None:
    why = destination_refusal(cfg("http://127.0.0.1:8080/v1", proxy="http://proxy.corp:3128"))
    assert why is not None and "proxy.corp" in why
    assert destination_refusal(cfg("http://localhost/v1", proxy="http://127.0.0.1:3128")) is None
    # https through a proxy is a CONNECT tunnel: TLS end to end.
    assert destination_refusal(cfg("https://api.example/v1", proxy="http://proxy:3128")) is None


def test_on_box_needs_no_url() -> None:
    assert destination_refusal(DestinationConfig("on-box", "llama-cpp", SCALE.highest)) is None


@pytest.mark.parametrize("cls", [OpenAIDestination, AnthropicDestination])
def test_a_refused_destination_cannot_be_constructed(cls: type[RemoteDestination]) -> None:
    with pytest.raises(ValueError, match=r"refused: plain http:// to 10\.0\.0\.5"):
        cls(cfg("http://10.0.0.5:8000/v1"), api_key=KEY)


# -- the policy ----------------------------------------------------------------------

POLICY = """\
[policy]
id = "tls-test"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[destinations.corp]
kind = "openai"
base_url = "{corp}"
model = "coder"
clearance = "internal"
timeout = 5.0
{corp_extra}

[destinations.cloud]
kind = "anthropic"
base_url = "{cloud}"
model = "claude-haiku-4-5"
clearance = "public"
timeout = 5.0

[routes]
public = ["corp", "cloud", "on-box"]
internal = ["corp", "on-box"]
restricted = ["on-box"]
"""


def policy_text(corp: str, cloud: str = "https://api.anthropic.com", corp_extra: str = "") -> str:
    return POLICY.format(corp=corp, cloud=cloud, corp_extra=corp_extra)


def test_allow_plain_http_is_parsed_and_typed() -> None:
    text = policy_text("http://10.0.0.5/v1", corp_extra="allow_plain_http = true")
    policy = parse_policy(text.encode(), "p.toml")
    assert policy.destinations["corp"].allow_plain_http is True
    assert policy.destinations["cloud"].allow_plain_http is False
    bad = policy_text("http://10.0.0.5/v1", corp_extra='allow_plain_http = "yes"')
    with pytest.raises(PolicyError, match=r"destinations\.corp\.allow_plain_http"):
        parse_policy(bad.encode(), "p.toml")


def _check(path: Path) -> argparse.Namespace:
    return argparse.Namespace(file=path, repo=None, limit=200, json=False)


def test_policy_check_rejects_plain_http_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(policy_text("http://10.0.0.5:8000/v1"), "utf-8")
    assert run_check(_check(path)) == EXIT_FAILED
    err = capsys.readouterr().err
    line = 1 + policy_text("http://10.0.0.5:8000/v1").splitlines().index(
        'base_url = "http://10.0.0.5:8000/v1"'
    )
    assert f"{path}:{line}: [destinations.corp.base_url]" in err
    assert "plain http:// to 10.0.0.5 is refused" in err
    assert "allow_plain_http = true" in err


def test_policy_check_rejects_a_key_over_allowed_plain_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    extra = 'allow_plain_http = true\napi_key_env = "CORP_KEY"'
    path.write_text(policy_text("http://10.0.0.5:8000/v1", corp_extra=extra), "utf-8")
    assert run_check(_check(path)) == EXIT_FAILED
    assert "API key would travel in clear" in capsys.readouterr().err


@pytest.mark.parametrize(
    "corp, extra",
    [
        ("http://127.0.0.1:8080/v1", ""),
        ("http://[::1]:8080/v1", 'api_key_env = "CORP_KEY"'),
        ("http://localhost:11434/v1", ""),
        ("https://llm.corp.example/v1", 'api_key_env = "CORP_KEY"'),
        ("http://10.0.0.5:8000/v1", "allow_plain_http = true"),
    ],
)
def test_policy_check_accepts_tls_loopback_and_explicit_plain_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corp: str, extra: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(policy_text(corp, corp_extra=extra), "utf-8")
    assert run_check(_check(path)) == EXIT_OK, capsys.readouterr().err
    assert "valid policy 'tls-test'" in capsys.readouterr().out


def test_policy_sign_refuses_plain_http_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(policy_text("http://10.0.0.5:8000/v1"), "utf-8")
    out = tmp_path / "p.onbox-policy"
    args = argparse.Namespace(
        file=path, key=[tmp_path / "none.key"], serial=1, expires="2099-01-01", out=out
    )
    assert run_sign(args) == EXIT_FAILED
    assert "refusing to sign" in capsys.readouterr().err
    assert not out.exists()


# -- run time: a refused destination is never built and never sent anything ---------


@pytest.fixture(scope="module")
def proxy() -> Iterator[RecordingServer]:
    """Stands in for the forward proxy in front of a plain-http host elsewhere: every
    request sent to ``http://llm.corp.example`` arrives here, so nothing is missed."""
    with RecordingServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(proxy: RecordingServer, cloud: RecordingServer) -> None:
    for srv in (proxy, cloud):
        srv.clear()
        srv.set_default(Fault.OK)
        srv.set_reply("return total\n")


def _router(
    proxy: RecordingServer, cloud: RecordingServer, corp_extra: str = ""
) -> tuple[Router, MemoryJournal, OnBox]:
    extra = f'proxy = "{proxy.url}"\n{corp_extra}'
    text = policy_text("http://llm.corp.example/v1", cloud=cloud.url, corp_extra=extra)
    policy = parse_policy(text.encode(), "tls-test.toml")
    on_box = OnBox()
    journal = MemoryJournal(servers=(proxy, cloud))
    return Router(policy, build_destinations(policy, on_box), journal), journal, on_box


def _close(router: Router) -> None:
    for dest in router.destinations.values():
        if isinstance(dest, RemoteDestination):
            dest.close()


def test_a_refused_destination_is_left_out_with_its_reason(
    proxy: RecordingServer, cloud: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="onbox.inference.remote"):
        router, _, _ = _router(proxy, cloud)
    try:
        assert "corp" not in router.destinations
        assert "cloud" in router.destinations
        assert "destination corp refused" in caplog.text
        assert "plain http:// to llm.corp.example is refused" in caplog.text
        [corp] = [s for s in router.plan(doc(name="internal").decision) if s.destination == "corp"]
        assert not corp.eligible and not corp.healthy
        why = destination_refusal(router.policy.destinations["corp"])
        assert why is not None and "allow_plain_http" in why
    finally:
        _close(router)


@pytest.mark.parametrize("label", ["public", "internal"])
def test_a_refused_destination_is_never_sent_anything(
    proxy: RecordingServer, cloud: RecordingServer, label: str
) -> None:
    router, journal, on_box = _router(proxy, cloud)
    try:
        routed = router.complete(doc(name=label), [], RequestSettings(), CancelToken())
        assert proxy.requests == []
        assert ("corp", "not-configured") in routed.fallbacks
        assert all(body.get("destination") != "corp" for _, body, _ in journal.entries)
        if label == "public":
            assert routed.destination == "cloud" and len(cloud.requests) == 1
        else:
            assert routed.destination == "on-box" and len(on_box.requests) == 1
            assert cloud.requests == []
    finally:
        _close(router)


def test_allow_plain_http_lets_it_through_without_a_key(
    proxy: RecordingServer, cloud: RecordingServer
) -> None:
    """The control for the test above: the same setup, allowed, does reach the proxy."""
    router, _, _ = _router(proxy, cloud, "allow_plain_http = true")
    try:
        routed = router.complete(doc(name="internal"), [], RequestSettings(), CancelToken())
        assert routed.destination == "corp"
        [sent] = proxy.requests
        assert sent.path == "http://llm.corp.example/v1/completions"
        assert "Authorization" not in sent.headers
    finally:
        _close(router)


def test_send_refuses_a_key_over_plain_http_elsewhere(proxy: RecordingServer) -> None:
    """The last check before the first byte, whatever the destination was built with."""
    config = cfg("http://llm.corp.example/v1", proxy=proxy.url, allow_plain_http=True)
    with OpenAIDestination(config, api_key=KEY) as keyed:
        with pytest.raises(DestinationUnavailable, match="API key would travel in clear"):
            keyed.complete(REQUEST, CancelToken())
    with OpenAIDestination(config, api_key=None) as keyless:
        keyless.config = replace(config, allow_plain_http=False)  # as if the check were skipped
        with pytest.raises(DestinationUnavailable, match="nothing sent: plain http://"):
            keyless.complete(REQUEST, CancelToken())
    assert proxy.requests == []


# -- redirects -----------------------------------------------------------------------


class _Redirector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirector(cloud: RecordingServer) -> Iterator[str]:
    handler = type("Handler", (_Redirector,), {"target": cloud.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("cls", [OpenAIDestination, AnthropicDestination])
def test_redirects_are_never_followed(
    cls: type[RemoteDestination], redirector: str, cloud: RecordingServer
) -> None:
    base = redirector + ("/v1" if cls is OpenAIDestination else "")
    with cls(cfg(base, kind=cls.kind), api_key=KEY) as dest:
        assert dest._client.follow_redirects is False
        with pytest.raises(DestinationProtocolError, match=r"redirect.*HTTP 307.*never followed"):
            dest.complete(REQUEST, CancelToken())
    assert cloud.requests == []
