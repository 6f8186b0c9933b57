"""The ``bedrock`` destination against a loopback Bedrock runtime that verifies SigV4.

The stand-in (:mod:`tests.support.bedrock_server`) recomputes every signature with the
known test credentials, so a request that arrives unsigned, signed over other bytes or
with the wrong scope is refused as the service would. Credentials reach the destination
the AWS way — environment variables, a shared credentials file and profile — with the
instance-metadata lookup switched off so nothing leaves loopback.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onbox.classification.labels import LabelScale
from onbox.classification.policy import parse_policy
from onbox.classification.policy_model import DestinationConfig, PolicyError
from onbox.inference.bedrock import BedrockDestination
from onbox.inference.destination import CancelToken, CompletionRequest, ContextSnippet
from onbox.inference.errors import (
    Cancelled,
    DestinationProtocolError,
    DestinationTimeout,
    DestinationUnavailable,
)
from onbox.inference.eventstream import EventStreamDecoder, EventStreamError
from onbox.inference.remote import build_destinations
from onbox.inference.routing import RequestSettings, Router
from tests.support.bedrock_server import (
    ACCESS_KEY,
    EXPIRED_TOKEN,
    REGION,
    SECRET_KEY,
    SESSION_TOKEN,
    SSO_TOKEN,
    BedrockFault,
    BedrockServer,
    encode_message,
    event,
)
from tests.support.recording_server import RecordingServer
from tests.unit.test_routing import MemoryJournal, OnBox, doc

SCALE = LabelScale()
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
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
def aws() -> Iterator[BedrockServer]:
    with BedrockServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _env(aws: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws.clear()
    aws.set_reply("return sum(xs)\n")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def config(aws: BedrockServer, **kw: Any) -> DestinationConfig:
    fields: dict[str, Any] = {
        "name": "bedrock",
        "kind": "bedrock",
        "clearance": SCALE.parse("internal"),
        "base_url": aws.url,
        "model": MODEL,
        "region": REGION,
        "timeout": 5.0,
    }
    fields.update(kw)
    return DestinationConfig(**fields)


@pytest.fixture
def bedrock(aws: BedrockServer) -> Iterator[BedrockDestination]:
    dest = BedrockDestination(config(aws))
    yield dest
    dest.close()


def test_converse_stream_is_signed_verified_and_parsed(
    bedrock: BedrockDestination, aws: BedrockServer
) -> None:
    deltas: list[str] = []
    completion = bedrock.send(bedrock.prepare(REQUEST), CancelToken(), on_delta=deltas.append)
    [sent] = aws.requests
    assert sent.verified, sent.why
    assert sent.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    body = sent.json()
    assert (
        f"{REQUEST.prefix}<FILL_HERE>{REQUEST.suffix}" in body["messages"][0]["content"][0]["text"]
    )
    assert body["inferenceConfig"] == {
        "maxTokens": 16,
        "temperature": REQUEST.temperature,
        "stopSequences": ["\n\n"],
    }
    assert sent.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert completion.text == "return sum(xs)\n" and "".join(deltas) == "return sum(xs)\n"
    assert (completion.tokens_in, completion.tokens_out) == (21, 5)
    assert completion.prompt_sha256 == bedrock.prepare(REQUEST).sha256
    described = str(bedrock.describe())
    assert SECRET_KEY not in described and ACCESS_KEY not in described
    assert SESSION_TOKEN not in described and bedrock.describe()["region"] == REGION


def test_converse_without_streaming(aws: BedrockServer) -> None:
    aws.set_reply("```python\nreturn 1\n```", usage=(40, 7))
    with BedrockDestination(config(aws, stream=False)) as dest:
        completion = dest.complete(REQUEST, CancelToken())
    [sent] = aws.requests
    assert sent.verified and sent.path.endswith("/converse")
    assert completion.text == "return 1"
    assert (completion.tokens_in, completion.tokens_out) == (40, 7)


def test_credentials_from_a_shared_file_profile(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[dev]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    with BedrockDestination(config(aws, profile="dev")) as dest:
        assert dest.complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    [sent] = aws.requests
    assert sent.verified and "X-Amz-Security-Token" not in sent.headers


def test_missing_credentials_send_nothing(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with BedrockDestination(config(aws)) as dest:
        with pytest.raises(DestinationUnavailable, match="no AWS credentials"):
            dest.complete(REQUEST, CancelToken())
        with BedrockDestination(config(aws, profile="nope")) as other:
            with pytest.raises(DestinationUnavailable, match="profile nope"):
                other.complete(REQUEST, CancelToken())
    assert aws.requests == []


def test_wrong_secret_is_refused_by_the_signature_check(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with BedrockDestination(config(aws)) as dest:
        with pytest.raises(DestinationUnavailable, match="refused the signed request") as err:
            dest.complete(REQUEST, CancelToken())
    assert "not-the-secret" not in str(err.value)
    assert aws.requests[0].why == "signature mismatch"


def test_expired_credentials_are_resolved_again_after_renewal(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", EXPIRED_TOKEN)
    with BedrockDestination(config(aws)) as dest:
        with pytest.raises(DestinationUnavailable, match=r"expired.*aws sso login"):
            dest.complete(REQUEST, CancelToken())
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)  # the user renewed them
        assert dest.complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    assert [r.verified for r in aws.requests] == [False, True]


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        (BedrockFault.STATUS_500, DestinationUnavailable, "InternalServerException"),
        (BedrockFault.UNAVAILABLE, DestinationUnavailable, "ServiceUnavailableException"),
        (BedrockFault.VALIDATION, DestinationProtocolError, "ValidationException"),
        (BedrockFault.THROTTLED_MIDSTREAM, DestinationUnavailable, "throttlingException"),
        (BedrockFault.BAD_CRC, DestinationProtocolError, "CRC mismatch"),
    ],
)
def test_service_errors_map_to_clear_destination_errors(
    bedrock: BedrockDestination,
    aws: BedrockServer,
    fault: BedrockFault,
    error: type[Exception],
    match: str,
) -> None:
    aws.push(fault)
    with pytest.raises(error, match=match):
        bedrock.complete(REQUEST, CancelToken())


def test_throttling_carries_retry_after(bedrock: BedrockDestination, aws: BedrockServer) -> None:
    aws.push(BedrockFault.THROTTLED, retry_after=7)
    with pytest.raises(DestinationUnavailable, match="throttling") as err:
        bedrock.complete(REQUEST, CancelToken())
    assert err.value.retry_after == 7


def test_a_stalled_stream_times_out(aws: BedrockServer) -> None:
    aws.push(BedrockFault.STALL)
    with BedrockDestination(config(aws, timeout=0.5)) as dest:
        with pytest.raises(DestinationTimeout):
            dest.complete(REQUEST, CancelToken())


def test_cancel_closes_a_stalled_stream(bedrock: BedrockDestination, aws: BedrockServer) -> None:
    aws.push(BedrockFault.STALL)
    cancel = CancelToken()
    first = threading.Event()
    timer = threading.Thread(target=lambda: first.wait(5) and cancel.cancel("superseded"))
    timer.start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        bedrock.send(bedrock.prepare(REQUEST), cancel, on_delta=lambda _: first.set())
    timer.join()
    assert first.is_set() and time.perf_counter() - started < 4  # not the 5 s read timeout


def test_eventstream_decoder_matches_botocore_in_any_chunking() -> None:
    from botocore.eventstream import EventStreamBuffer

    stream = b"".join(
        event("contentBlockDelta", {"delta": {"text": t}}) for t in ("ab", "", "ü" * 300)
    )
    ours = EventStreamDecoder()
    decoded = [m for i in range(len(stream)) for m in ours.feed(stream[i : i + 1])]
    ours.finish()
    reference = EventStreamBuffer()
    reference.add_data(stream)
    theirs = list(reference)
    assert [m.payload for m in decoded] == [m.payload for m in theirs]
    assert [m.headers for m in decoded] == [m.headers for m in theirs]


def test_eventstream_decoder_refuses_corruption() -> None:
    good = encode_message({":message-type": "event"}, b"{}")
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(good[:3] + bytes([good[3] ^ 1]) + good[4:])
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(good[:-5] + b"X" + good[-4:])
    partial = EventStreamDecoder()
    assert partial.feed(good[:-1]) == []
    with pytest.raises(EventStreamError, match="ended"):
        partial.finish()


POLICY = """
[policy]
id = "bedrock-test"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[destinations.bedrock]
kind = "bedrock"
clearance = "internal"
region = "{region}"
base_url = "{url}"
model = "{model}"
timeout = 5.0

[routes]
public = ["bedrock"]
internal = ["bedrock"]
"""


def test_policy_routes_through_bedrock_and_falls_back_on_box_when_throttled(
    aws: BedrockServer,
) -> None:
    policy = parse_policy(
        POLICY.format(region=REGION, url=aws.url, model=MODEL).encode(), "bedrock.toml"
    )
    on_box = OnBox()
    destinations = build_destinations(policy, on_box)
    journal = MemoryJournal()
    router = Router(policy, destinations, journal)
    try:
        routed = router.complete(doc(name="internal"), [], RequestSettings(), CancelToken())
        assert (routed.destination, routed.kind) == ("bedrock", "bedrock")
        [(kind, body, durable)] = journal.entries
        assert kind == "egress" and durable and body["promptSha256"] == routed.prompt_sha256
        assert SECRET_KEY not in str(body) and SESSION_TOKEN not in str(body)

        aws.push(BedrockFault.THROTTLED, retry_after=30)
        routed = router.complete(doc(name="internal"), [], RequestSettings(), CancelToken())
        assert routed.destination == "on-box" and routed.fallbacks == [("bedrock", "unavailable")]
        assert router.breaker.retry_in("bedrock") > 20  # Retry-After honoured

        routed = router.complete(doc(name="restricted"), [], RequestSettings(), CancelToken())
        assert routed.destination == "on-box" and len(aws.requests) == 2
        explained = router.explain(doc(name="internal").decision)["text"]
        assert "bedrock (bedrock, clearance internal): failing" in explained
    finally:
        destinations["bedrock"].close()  # type: ignore[attr-defined]


def test_policy_needs_region_and_model() -> None:
    text = POLICY.format(region="", url="https://vpce.example", model=MODEL)
    with pytest.raises(PolicyError, match="needs region"):
        parse_policy(text.encode(), "bedrock.toml")


def test_credentials_from_a_config_file_credential_process(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    helper = tmp_path / "creds.py"
    helper.write_text(
        "import json\nprint(json.dumps({'Version': 1, "
        f"'AccessKeyId': {ACCESS_KEY!r}, 'SecretAccessKey': {SECRET_KEY!r}, "
        f"'SessionToken': {SESSION_TOKEN!r}}}))\n"
    )
    config_file = tmp_path / "config"
    config_file.write_text(f"[profile sso-like]\ncredential_process = {sys.executable} {helper}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    with BedrockDestination(config(aws, profile="sso-like")) as dest:
        assert dest.complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    [sent] = aws.requests
    assert sent.verified and sent.headers["X-Amz-Security-Token"] == SESSION_TOKEN


def test_an_untrusted_tls_endpoint_sends_nothing() -> None:
    with RecordingServer(tls=True) as tls:
        cfg = DestinationConfig(
            name="bedrock",
            kind="bedrock",
            clearance=SCALE.parse("internal"),
            base_url=tls.url,
            model=MODEL,
            region=REGION,
            timeout=5.0,
        )
        with BedrockDestination(cfg) as dest:
            with pytest.raises(DestinationUnavailable, match="TLS certificate did not verify"):
                dest.complete(REQUEST, CancelToken())
        assert tls.requests == []


@pytest.mark.parametrize("expired", [False, True])
def test_credentials_from_the_sso_cache(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, expired: bool
) -> None:
    """`aws sso login` left a token in ~/.aws/sso/cache; botocore trades it at the portal."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    start_url = "https://onbox-test.awsapps.com/start"
    config_file = tmp_path / "config"
    config_file.write_text(
        f"[profile dev-sso]\nsso_start_url = {start_url}\nsso_region = {REGION}\n"
        "sso_account_id = 123456789012\nsso_role_name = Developer\n"
    )
    cache = tmp_path / "home" / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True)
    (cache / f"{hashlib.sha1(start_url.encode()).hexdigest()}.json").write_text(
        json.dumps(
            {
                "startUrl": start_url,
                "region": REGION,
                # The portal no longer knows a session that ended on its side.
                "accessToken": "ended-session" if expired else SSO_TOKEN,
                "expiresAt": "2099-01-01T00:00:00Z",
            }
        )
    )
    # botocore reads ~ for the token cache once, at import; point it at this test's home.
    import botocore.credentials

    monkeypatch.setattr(botocore.credentials.SSOProvider, "_SSO_TOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO", aws.url)  # the portal is the stand-in
    with BedrockDestination(config(aws, profile="dev-sso")) as dest:
        if expired:
            with pytest.raises(DestinationUnavailable, match=r"profile dev-sso.*aws sso login"):
                dest.complete(REQUEST, CancelToken())
            assert aws.requests == []
            return
        assert dest.complete(REQUEST, CancelToken()).text == "return sum(xs)\n"
    [sent] = aws.requests
    assert sent.verified and sent.headers["X-Amz-Security-Token"] == SESSION_TOKEN


def test_a_role_that_cannot_be_assumed_fails_clearly(
    aws: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``role_arn`` + ``source_profile``: STS (here the stand-in) refuses; nothing is sent."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    creds = tmp_path / "credentials"
    creds.write_text(f"[base]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = x\n")
    config_file = tmp_path / "config"
    config_file.write_text(
        "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/Onbox\n"
        f"source_profile = base\nregion = {REGION}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.url)
    with BedrockDestination(config(aws, profile="deploy")) as dest:
        with pytest.raises(DestinationUnavailable, match="profile deploy are not usable") as err:
            dest.complete(REQUEST, CancelToken())
    assert "AccessDenied" in str(err.value) and aws.requests == []
