"""The ``vertex`` destination against a loopback Vertex AI and OAuth token endpoint.

Credentials are Application Default Credentials as on a real machine:
``GOOGLE_APPLICATION_CREDENTIALS`` names a service-account key; google-auth signs a JWT
with it and trades it at the key file's ``token_uri`` — the stand-in's ``/token``, which
verifies the JWT signature and claims and issues bearer tokens that the model endpoints
then check (:mod:`tests.support.vertex_server`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onbox.classification.labels import LabelScale
from onbox.classification.policy import parse_policy
from onbox.classification.policy_model import DestinationConfig, PolicyError
from onbox.inference.destination import CancelToken, CompletionRequest, ContextSnippet
from onbox.inference.errors import (
    Cancelled,
    DestinationProtocolError,
    DestinationTimeout,
    DestinationUnavailable,
)
from onbox.inference.remote import RemoteDestination, build_destinations
from onbox.inference.routing import RequestSettings, Router
from onbox.inference.vertex import (
    VertexAnthropicDestination,
    VertexCodestralDestination,
    VertexGeminiDestination,
    publisher_of,
    vertex_destination,
)
from tests.support.recording_server import RecordingServer
from tests.support.vertex_server import LOCATION, PROJECT, VertexFault, VertexServer
from tests.unit.test_routing import MemoryJournal, OnBox, doc

SCALE = LabelScale()
REQUEST = CompletionRequest(
    prefix="def total(xs):\n    ",
    suffix="\n\nprint(total([1]))\n",
    language="python",
    path="app/calc.py",
    context=(ContextSnippet("app/util.py", "def helper():\n    pass\n", "public"),),
    max_tokens=16,
    stop=("\n\n",),
)
PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"


@pytest.fixture(scope="module")
def gcp() -> Iterator[VertexServer]:
    with VertexServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _adc(gcp: VertexServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gcp.clear()
    gcp.set_reply("return sum(xs)\n")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp.service_account_file(tmp_path)))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user login on disk
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe the metadata server


OPEN: list[RemoteDestination] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def vertex(gcp: VertexServer, model: str = "gemini-2.5-flash", **kw: Any) -> RemoteDestination:
    fields: dict[str, Any] = {
        "name": "vertex",
        "kind": "vertex",
        "clearance": SCALE.parse("internal"),
        "base_url": gcp.url,
        "model": model,
        "project": PROJECT,
        "location": LOCATION,
        "timeout": 5.0,
    }
    fields.update(kw)
    dest = vertex_destination(DestinationConfig(**fields))
    OPEN.append(dest)
    return dest


def test_gemini_streams_with_an_adc_token(gcp: VertexServer) -> None:
    dest = vertex(gcp)
    assert isinstance(dest, VertexGeminiDestination)
    deltas: list[str] = []
    completion = dest.send(dest.prepare(REQUEST), CancelToken(), on_delta=deltas.append)
    [sent] = gcp.requests
    assert sent.authorized and gcp.token_requests == 1
    assert sent.path == f"{PREFIX}/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    body = sent.json()
    assert f"{REQUEST.prefix}<FILL_HERE>{REQUEST.suffix}" in body["contents"][0]["parts"][0]["text"]
    assert body["generationConfig"]["maxOutputTokens"] == 16
    assert body["generationConfig"]["stopSequences"] == ["\n\n"]
    assert completion.text == "return sum(xs)\n" and "".join(deltas) == "return sum(xs)\n"
    assert (completion.tokens_in, completion.tokens_out) == (30, 6)
    assert completion.model == "gemini-test-001"
    token = sent.headers["Authorization"][7:]
    assert token not in str(dest.describe()) and dest.describe()["project"] == PROJECT
    dest.complete(REQUEST, CancelToken())
    assert gcp.token_requests == 1  # the token is reused while valid


def test_gemini_without_streaming(gcp: VertexServer) -> None:
    gcp.set_reply("```python\nreturn 1\n```", usage=(50, 9))
    completion = vertex(gcp, stream=False).complete(REQUEST, CancelToken())
    [sent] = gcp.requests
    assert sent.path.endswith(":generateContent")
    assert completion.text == "return 1" and (completion.tokens_in, completion.tokens_out) == (
        50,
        9,
    )


@pytest.mark.parametrize("stream", [True, False])
def test_claude_on_vertex(gcp: VertexServer, stream: bool) -> None:
    dest = vertex(gcp, "claude-haiku-4-5@20251001", stream=stream)
    assert isinstance(dest, VertexAnthropicDestination)
    completion = dest.complete(REQUEST, CancelToken())
    [sent] = gcp.requests
    method = "streamRawPredict" if stream else "rawPredict"
    assert sent.path == f"{PREFIX}/anthropic/models/claude-haiku-4-5@20251001:{method}"
    body = sent.json()
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["stream"] is stream
    assert completion.text == "return sum(xs)\n"
    assert (completion.tokens_in, completion.tokens_out) == (30, 6)


def test_codestral_fill_in_the_middle_on_vertex(gcp: VertexServer) -> None:
    dest = vertex(gcp, "codestral-2501")
    assert isinstance(dest, VertexCodestralDestination)
    completion = dest.complete(REQUEST, CancelToken())
    [sent] = gcp.requests
    assert sent.path == f"{PREFIX}/mistralai/models/codestral-2501:streamRawPredict"
    body = sent.json()
    assert body["prompt"].endswith(REQUEST.prefix) and body["suffix"] == REQUEST.suffix
    assert body["model"] == "codestral-2501"
    assert completion.text == "return sum(xs)\n" and completion.tokens_out == 6


def test_publisher_comes_from_the_model_unless_set() -> None:
    def cfg(model: str, publisher: str | None = None) -> DestinationConfig:
        return DestinationConfig("v", "vertex", SCALE.lowest, model=model, publisher=publisher)

    assert publisher_of(cfg("gemini-2.5-pro")) == "google"
    assert publisher_of(cfg("claude-sonnet-4-5@20250929")) == "anthropic"
    assert publisher_of(cfg("codestral-2501")) == "mistralai"
    assert publisher_of(cfg("my-tuned-model", "anthropic")) == "anthropic"


def test_a_revoked_token_fails_clearly_and_is_fetched_again(gcp: VertexServer) -> None:
    dest = vertex(gcp)
    dest.complete(REQUEST, CancelToken())
    gcp.push(VertexFault.REVOKED)
    with pytest.raises(DestinationUnavailable, match="refused the access token"):
        dest.complete(REQUEST, CancelToken())
    assert dest.complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    assert gcp.token_requests == 2
    assert [r.authorized for r in gcp.requests] == [True, False, True]


def test_a_token_about_to_expire_is_refreshed_before_sending(gcp: VertexServer) -> None:
    gcp.set_token_lifetime(30)  # inside google-auth's refresh margin: stale at once
    dest = vertex(gcp)
    dest.complete(REQUEST, CancelToken())
    dest.complete(REQUEST, CancelToken())
    assert gcp.token_requests == 2 and all(r.authorized for r in gcp.requests)
    tokens = {r.headers["Authorization"] for r in gcp.requests}
    assert len(tokens) == 2


def test_unusable_credentials_send_nothing(
    gcp: VertexServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gcp.set_token_endpoint_down(True)
    with pytest.raises(DestinationUnavailable, match="could not be refreshed"):
        vertex(gcp).complete(REQUEST, CancelToken())
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(DestinationUnavailable, match="no Google credentials"):
        vertex(gcp).complete(REQUEST, CancelToken())
    assert gcp.requests == []


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        (VertexFault.STATUS_500, DestinationUnavailable, "HTTP 500 INTERNAL"),
        (VertexFault.NOT_FOUND, DestinationProtocolError, "HTTP 404 NOT_FOUND"),
    ],
)
def test_service_errors_map_to_clear_destination_errors(
    gcp: VertexServer, fault: VertexFault, error: type[Exception], match: str
) -> None:
    gcp.push(fault)
    with pytest.raises(error, match=match):
        vertex(gcp).complete(REQUEST, CancelToken())


def test_quota_exhaustion_carries_retry_after(gcp: VertexServer) -> None:
    gcp.push(VertexFault.RATE_LIMITED, retry_after=11)
    with pytest.raises(DestinationUnavailable, match="RESOURCE_EXHAUSTED") as err:
        vertex(gcp).complete(REQUEST, CancelToken())
    assert err.value.retry_after == 11


def test_a_stalled_stream_times_out(gcp: VertexServer) -> None:
    gcp.push(VertexFault.STALL)
    with pytest.raises(DestinationTimeout):
        vertex(gcp, timeout=0.5).complete(REQUEST, CancelToken())


def test_cancel_closes_a_stalled_stream(gcp: VertexServer) -> None:
    gcp.push(VertexFault.STALL)
    dest = vertex(gcp)
    cancel = CancelToken()
    first = threading.Event()
    timer = threading.Thread(target=lambda: first.wait(5) and cancel.cancel("superseded"))
    timer.start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        dest.send(dest.prepare(REQUEST), cancel, on_delta=lambda _: first.set())
    timer.join()
    assert first.is_set() and time.perf_counter() - started < 4


POLICY = """
[policy]
id = "vertex-test"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[destinations.gemini]
kind = "vertex"
clearance = "public"
project = "{project}"
location = "{location}"
base_url = "{url}"
model = "gemini-2.5-flash"
timeout = 5.0

[destinations.claude]
kind = "vertex"
clearance = "internal"
project = "{project}"
location = "{location}"
base_url = "{url}"
model = "claude-haiku-4-5@20251001"
timeout = 5.0

[routes]
public = ["gemini", "claude"]
internal = ["claude"]
"""


def test_policy_routes_by_clearance_and_falls_back_upward(gcp: VertexServer) -> None:
    policy = parse_policy(
        POLICY.format(project=PROJECT, location=LOCATION, url=gcp.url).encode(), "vertex.toml"
    )
    destinations = build_destinations(policy, OnBox())
    router = Router(policy, destinations, MemoryJournal())
    try:
        routed = router.complete(doc(name="public"), [], RequestSettings(), CancelToken())
        assert routed.destination == "gemini" and ":streamGenerateContent" in gcp.requests[0].path
        gcp.push(VertexFault.RATE_LIMITED, retry_after=30)
        routed = router.complete(doc(name="public"), [], RequestSettings(), CancelToken())
        assert routed.destination == "claude" and routed.fallbacks == [("gemini", "unavailable")]
        routed = router.complete(doc(name="internal"), [], RequestSettings(), CancelToken())
        assert routed.destination == "claude"
        assert all("/publishers/google/" not in r.path for r in gcp.requests[2:])
        steps = {
            s["destination"]: s for s in router.explain(doc(name="internal").decision)["route"]
        }
        assert steps["claude"]["eligible"] and "clearance internal" in steps["claude"]["why"]
    finally:
        for dest in destinations.values():
            if isinstance(dest, RemoteDestination):
                dest.close()


def test_policy_needs_project_and_location() -> None:
    text = POLICY.format(project="", location=LOCATION, url="https://psc.example")
    with pytest.raises(PolicyError, match="needs project"):
        parse_policy(text.encode(), "vertex.toml")


def test_an_untrusted_tls_endpoint_sends_nothing(gcp: VertexServer) -> None:
    with RecordingServer(tls=True) as tls:
        dest = vertex(gcp, base_url=tls.url)
        with pytest.raises(DestinationUnavailable, match="TLS certificate did not verify"):
            dest.complete(REQUEST, CancelToken())
        assert tls.requests == []
