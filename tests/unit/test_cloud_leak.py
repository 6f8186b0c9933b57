"""No content above a destination's clearance reaches the Bedrock or Vertex stand-in.

The property of ``tests/unit/test_leak.py``, for the two new destination kinds, through
the real router, egress gate, context gathering and redaction: Hypothesis picks the
label of the edited document and of each other open document, whether a secret is
pasted, and which requests Vertex throttles (so routing falls back). Every document
carries a canary minted for its label. After each completion, no request body that
either stand-in received holds a canary above that stand-in's clearance, or the secret,
and every body it received has a durable write-ahead ``egress`` entry with its SHA-256.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onbox.classification.decision import Decision, Finding, Reason
from onbox.classification.policy import parse_policy
from onbox.inference.destination import CancelToken
from onbox.inference.remote import RemoteDestination, build_destinations
from onbox.inference.routing import DocumentView, RequestSettings, Router
from tests.support.bedrock_server import ACCESS_KEY, REGION, SECRET_KEY, BedrockServer
from tests.support.vertex_server import LOCATION, PROJECT, VertexFault, VertexServer
from tests.unit.test_routing import MemoryJournal, OnBox, label

LABELS = ("public", "internal", "restricted")
SECRET = "AKIAQWERTYUIOPASDFGH"  # found by the content scanner; must never leave

POLICY = """
[policy]
id = "cloud-leak"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[content]
secrets = "internal"

[destinations.gemini]
kind = "vertex"
clearance = "public"
project = "{project}"
location = "{location}"
base_url = "{gcp}"
model = "gemini-2.5-flash"
timeout = 5.0

[destinations.bedrock]
kind = "bedrock"
clearance = "internal"
region = "{region}"
base_url = "{aws}"
model = "anthropic.claude-3-5-haiku-20241022-v1:0"
timeout = 5.0

[routes]
public = ["gemini", "bedrock"]
internal = ["bedrock"]
"""


@pytest.fixture(scope="module")
def aws() -> Iterator[BedrockServer]:
    with BedrockServer() as server:
        yield server


@pytest.fixture(scope="module")
def gcp() -> Iterator[VertexServer]:
    with VertexServer() as server:
        yield server


@pytest.fixture
def credentials(gcp: VertexServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "GOOGLE_APPLICATION_CREDENTIALS": str(gcp.service_account_file(tmp_path)),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "NO_GCE_CHECK": "True",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


_serial = itertools.count()


def view(name: str, uri: str, *, secret: bool) -> DocumentView:
    """A document of label ``name`` carrying a canary minted for that label."""
    canary = f"CANARY_{name.upper()}_{next(_serial)}"
    text = f"# {canary}\ndef f():\n    return 1\n"
    findings: tuple[Finding, ...] = ()
    if secret:
        start = len(text) + len("key = '")
        text += f"key = '{SECRET}'\n"
        findings = (
            Finding(
                "secret", "aws-access-key", start, start + len(SECRET), label("internal"), "aws"
            ),
        )
    text += "\n"
    decision = Decision(
        label(name),
        (Reason("repo-tag", label(name), f"tag says {name}"),),
        "cloud-leak",
        findings=findings,
        path=uri.rsplit("/", 1)[-1],
    )
    return DocumentView(uri, uri[7:], text, len(text) - 1, "python", decision)


def canaries_above(body: str, clearance: str) -> list[str]:
    """Canaries in ``body`` minted for a label above ``clearance``."""
    above = LABELS[LABELS.index(clearance) + 1 :]
    return [f"CANARY_{n.upper()}" for n in above if f"CANARY_{n.upper()}_" in body]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    main=st.sampled_from(LABELS),
    others=st.lists(st.sampled_from(LABELS), max_size=3),
    secret=st.booleans(),
    throttled=st.booleans(),
)
def test_nothing_above_clearance_reaches_bedrock_or_vertex(
    aws: BedrockServer,
    gcp: VertexServer,
    credentials: None,
    main: str,
    others: list[str],
    secret: bool,
    throttled: bool,
) -> None:
    aws.clear()
    gcp.clear()
    if throttled:
        gcp.push(VertexFault.RATE_LIMITED, retry_after=1)
    text = POLICY.format(
        project=PROJECT, location=LOCATION, gcp=gcp.url, region=REGION, aws=aws.url
    )
    policy = parse_policy(text.encode(), "cloud-leak.toml")
    destinations = build_destinations(policy, OnBox())
    journal = MemoryJournal()
    try:
        router = Router(policy, destinations, journal)
        doc = view(main, "file:///repo/app/main.py", secret=secret)
        context = [view(n, f"file:///repo/lib/m{i}.py", secret=False) for i, n in enumerate(others)]
        routed = router.complete(doc, context, RequestSettings(max_tokens=8), CancelToken())
    finally:
        for dest in destinations.values():
            if isinstance(dest, RemoteDestination):
                dest.close()
    received = [("public", r.body) for r in gcp.requests] + [
        ("internal", r.body) for r in aws.requests
    ]
    for clearance, body in received:
        decoded = body.decode()
        assert canaries_above(decoded, clearance) == [], (clearance, decoded)
        assert SECRET not in decoded
    egress = {
        b["promptSha256"] for kind, b, durable in journal.entries if kind == "egress" and durable
    }
    assert {hashlib.sha256(body).hexdigest() for _, body in received} <= egress
    if main == "restricted":
        assert received == [] and routed.destination == "on-box"
