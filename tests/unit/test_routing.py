"""Routing by label: route plans, fallbacks, the circuit breaker, write-ahead journalling,
context clearance and redaction — with real destinations talking to loopback servers.

The "cloud" (Anthropic wire format, clearance public) and "corp" (OpenAI-compatible,
clearance internal) are :class:`RecordingServer` instances; the on-box model is a small
recording stand-in because the model itself is not what these tests exercise.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import (
    decrypt_prompt,
    generate_recipient_key,
    iter_entries,
    open_journal,
    verify_journal,
)
from onbox.classification.decision import Decision, Finding, Reason
from onbox.classification.labels import Label
from onbox.classification.policy import Policy, parse_policy
from onbox.inference.destination import (
    CancelToken,
    Completion,
    CompletionRequest,
    Destination,
)
from onbox.inference.errors import Cancelled, ModelError
from onbox.inference.health import CircuitBreaker
from onbox.inference.remote import RemoteDestination, build_destinations
from onbox.inference.routing import (
    ClearanceViolation,
    DocumentView,
    PolicyChanged,
    RequestSettings,
    Router,
)
from tests.support.journal import MemoryJournal as BaseMemoryJournal
from tests.support.journal import Receipt
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import Fault, RecordingServer

SECRET = "AKIAABCDEFGHIJKLMNOP"  # an AWS access key id the content scanner finds


class OnBox:
    """Stands in for the llama.cpp model: records what it was asked."""

    name = "on-box"
    kind = "llama-cpp"
    clearance = "restricted"

    def __init__(self) -> None:
        self.requests: list[CompletionRequest] = []

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        if cancel.cancelled:
            raise Cancelled("cancelled")
        self.requests.append(request)
        return Completion(text="local()", model="on-box-model")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "endpoint": None, "model": "on-box-model"}


@dataclass
class MemoryJournal(BaseMemoryJournal):
    """Also records, at each append, how many requests the servers had already received."""

    sent_before_append: list[int] = field(default_factory=list)
    servers: tuple[RecordingServer, ...] = ()

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Receipt:
        if not self.fail:
            self.sent_before_append.append(sum(len(s.requests) for s in self.servers))
        return super().append(kind, body, durable=durable)


@pytest.fixture(scope="module")
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def corp() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(cloud: RecordingServer, corp: RecordingServer) -> None:
    for srv in (cloud, corp):
        srv.clear()
        srv.set_default(Fault.OK)
        srv.set_reply("return total\n")


def policy_text(cloud: str, corp: str, *, encrypt: bool = False) -> str:
    """Public goes to the cloud, then corp; internal to corp; secrets and PII are internal."""
    builder = (
        PolicyBuilder("route-test", extra='[content]\nsecrets = "internal"\npii = "internal"')
        .destination(
            "corp",
            kind="openai",
            base_url=f"{corp}/v1",
            model="coder",
            clearance="internal",
            timeout=5.0,
        )
        .destination(
            "cloud",
            kind="anthropic",
            base_url=cloud,
            model="claude-haiku-4-5",
            clearance="public",
            timeout=5.0,
        )
        .route("public", "cloud", "corp")
        .route("internal", "corp")
    )
    if encrypt:
        builder.policy(security_team_key=base64.b64encode(bytes(32)).decode())
        builder.extra += "\n[audit]\nstore_encrypted_prompts = true"
    return builder.toml()


def make_policy(cloud: RecordingServer, corp: RecordingServer, *, encrypt: bool = False) -> Policy:
    return parse_policy(
        policy_text(cloud.url, corp.url, encrypt=encrypt).encode(), "route-test.toml"
    )


@dataclass
class Setup:
    router: Router
    journal: MemoryJournal
    on_box: OnBox
    destinations: dict[str, Destination]


@pytest.fixture
def setup(cloud: RecordingServer, corp: RecordingServer) -> Iterator[Setup]:
    policy = make_policy(cloud, corp)
    on_box = OnBox()
    destinations = build_destinations(policy, on_box)
    journal = MemoryJournal(servers=(cloud, corp))
    yield Setup(Router(policy, destinations, journal), journal, on_box, destinations)
    for dest in destinations.values():
        if isinstance(dest, RemoteDestination):
            dest.close()


def label(name: str) -> Label:
    return Label(("public", "internal", "restricted").index(name), name)


def doc(
    text: str = "def total(xs):\n    \n",
    name: str = "public",
    *,
    uri: str = "file:///repo/app/calc.py",
    findings: tuple[Finding, ...] = (),
    offset: int | None = None,
) -> DocumentView:
    decision = Decision(
        label(name),
        (Reason("repo-tag", label(name), f"tag says {name}"),),
        "route-test",
        findings=findings,
        path=uri.rsplit("/", 1)[-1],
    )
    return DocumentView(
        uri, uri[7:], text, len(text) - 1 if offset is None else offset, "python", decision
    )


SETTINGS = RequestSettings(max_tokens=16)


def test_plan_lists_the_route_and_ends_on_box(setup: Setup) -> None:
    steps = setup.router.plan(doc().decision)
    assert [(s.destination, s.eligible, s.healthy) for s in steps] == [
        ("cloud", True, True),
        ("corp", True, True),
        ("on-box", True, True),
    ]
    assert [s.destination for s in setup.router.plan(doc(name="restricted").decision)] == ["on-box"]
    assert steps[0].to_json()["clearance"] == "public"


def test_public_goes_to_the_first_destination(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    routed = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert (routed.destination, routed.kind, routed.fallbacks) == ("cloud", "anthropic", [])
    assert routed.completion.text == "return total\n"
    assert len(cloud.requests) == 1 and corp.requests == [] and setup.on_box.requests == []


def test_egress_is_journalled_durably_before_the_first_byte(
    setup: Setup, cloud: RecordingServer
) -> None:
    routed = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    [(kind, body, durable)] = setup.journal.entries
    assert kind == "egress" and durable
    assert setup.journal.sent_before_append == [0]
    assert body["promptSha256"] == cloud.requests[0].sha256 == routed.prompt_sha256
    assert body["bytes"] == len(cloud.requests[0].body)
    assert (body["destination"], body["label"], body["clearance"]) == ("cloud", "public", "public")
    assert routed.egress_seq == 1
    assert "def total" not in str(body)  # hashes and sizes, never the text


def test_restricted_stays_on_box_and_is_not_journalled_as_egress(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    routed = setup.router.complete(doc(name="restricted"), [], SETTINGS, CancelToken())
    assert routed.destination == "on-box" and routed.egress_seq is None
    assert cloud.requests == [] and corp.requests == [] and setup.journal.entries == []
    assert setup.on_box.requests[0].prefix == "def total(xs):\n    "


def test_failure_falls_back_along_the_route_and_opens_the_circuit(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    cloud.push(Fault.STATUS_500)
    routed = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "corp" and routed.fallbacks == [("cloud", "unavailable")]
    assert len(setup.journal.entries) == 2  # one entry per egress attempt
    again = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert again.destination == "corp" and again.fallbacks == [("cloud", "circuit-open")]
    assert len(cloud.requests) == 1
    assert not setup.router.plan(doc().decision)[0].healthy


def test_retry_after_keeps_a_destination_out_at_least_that_long(
    setup: Setup, cloud: RecordingServer
) -> None:
    cloud.push(Fault.RATE_LIMITED, retry_after=120)
    setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert setup.router.breaker.retry_in("cloud") > 100


def test_a_recovered_destination_is_used_again() -> None:
    now = [0.0]
    breaker = CircuitBreaker(cooldown=10, clock=lambda: now[0])
    breaker.record_failure("cloud", "500")
    assert not breaker.healthy("cloud")
    now[0] = 10.5
    assert breaker.healthy("cloud")  # half-open: one try
    assert breaker.record_failure("cloud", "500") == 20  # doubled
    now[0] = 31
    breaker.record_success("cloud")
    assert breaker.healthy("cloud") and breaker.snapshot() == {}


def test_everything_failing_ends_on_box(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    cloud.push(Fault.INVALID_JSON)
    corp.push(Fault.STATUS_500)
    routed = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "on-box"
    assert routed.fallbacks == [("cloud", "protocol-error"), ("corp", "unavailable")]


def test_internal_never_goes_to_the_public_cloud_even_when_corp_fails(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    corp.push(Fault.STATUS_500)
    routed = setup.router.complete(doc(name="internal"), [], SETTINGS, CancelToken())
    assert routed.destination == "on-box" and cloud.requests == []


def test_journal_failure_means_no_egress(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    setup.journal.fail = True
    routed = setup.router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "on-box" and routed.fallbacks == [("cloud", "journal")]
    assert cloud.requests == [] and corp.requests == []


def test_no_journal_means_no_egress(setup: Setup, cloud: RecordingServer) -> None:
    router = Router(setup.router.policy, setup.destinations, None)
    assert router.complete(doc(), [], SETTINGS, CancelToken()).destination == "on-box"
    assert cloud.requests == []


def test_cancellation_propagates_and_is_not_a_fallback(
    setup: Setup, cloud: RecordingServer
) -> None:
    cloud.push(Fault.STALL)
    cancel = CancelToken()
    settings = replace(SETTINGS, on_delta=lambda _t: cancel.cancel())
    with pytest.raises(Cancelled):
        setup.router.complete(doc(), [], settings, cancel)
    assert setup.on_box.requests == []
    assert setup.router.breaker.healthy("cloud")


def test_secrets_are_redacted_and_echoed_placeholders_removed(
    setup: Setup, corp: RecordingServer
) -> None:
    text = f'KEY = "{SECRET}"\ndef total(xs):\n    \n'
    start = text.index(SECRET)
    finding = Finding("secret", "aws-access-key", start, start + len(SECRET), label("internal"))
    corp.set_reply("return <ONBOX_REDACTED:aws-access-key>\n")
    routed = setup.router.complete(
        doc(text, "internal", findings=(finding,)), [], SETTINGS, CancelToken()
    )
    assert routed.destination == "corp"
    sent = corp.requests[0].body.decode()
    assert SECRET not in sent and "<ONBOX_REDACTED:aws-access-key>" in sent
    assert routed.redactions == {"aws-access-key": 1}
    assert setup.journal.entries[0][1]["redactions"] == {"aws-access-key": 1}
    assert routed.completion.text == "return \n"


def test_a_secret_missing_from_a_stale_decision_is_still_caught(
    setup: Setup, corp: RecordingServer
) -> None:
    """The decision says public with no findings; the fresh scan of the window finds the
    key, raises the label to internal (policy: secrets = internal) and redacts it."""
    text = f'KEY = "{SECRET}"\ndef total(xs):\n    \n'
    routed = setup.router.complete(doc(text, "public"), [], SETTINGS, CancelToken())
    assert routed.destination == "corp" and routed.fallbacks == [("cloud", "relabelled")]
    assert SECRET not in corp.requests[0].body.decode()


def test_context_goes_only_where_its_label_is_cleared(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    others = [
        doc("PUBLIC_HELPER = 1\n", "public", uri="file:///repo/app/util.py"),
        doc("INTERNAL_HELPER = 2\n", "internal", uri="file:///repo/app/internal.py"),
        doc("RESTRICTED_HELPER = 3\n", "restricted", uri="file:///repo/app/secret.py"),
    ]
    setup.router.complete(doc(), others, SETTINGS, CancelToken())
    to_cloud = cloud.requests[0].body.decode()
    assert "PUBLIC_HELPER" in to_cloud
    assert "INTERNAL_HELPER" not in to_cloud and "RESTRICTED_HELPER" not in to_cloud
    setup.router.complete(doc(name="internal"), others, SETTINGS, CancelToken())
    to_corp = corp.requests[0].body.decode()
    assert "PUBLIC_HELPER" in to_corp and "INTERNAL_HELPER" in to_corp
    assert "RESTRICTED_HELPER" not in to_corp
    entry = setup.journal.entries[-1][1]
    assert sorted(c["label"] for c in entry["context"]) == ["internal", "public"]


def test_secrets_in_context_snippets_are_redacted(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    other = doc(f'TOKEN = "ghp_{"a1B2" * 9}"\nX = 1\n', "public", uri="file:///repo/app/conf.py")
    setup.router.complete(doc(), [other], SETTINGS, CancelToken())
    # The scan labels the snippet's secret internal, above the cloud's clearance: left out.
    assert "ghp_" not in cloud.requests[0].body.decode()
    assert "X = 1" not in cloud.requests[0].body.decode()
    # corp may see the snippet (internal), with the token replaced.
    routed = setup.router.complete(doc(name="internal"), [other], SETTINGS, CancelToken())
    to_corp = corp.requests[0].body.decode()
    assert "X = 1" in to_corp and "ghp_" not in to_corp
    assert "<ONBOX_REDACTED:github-token>" in to_corp
    assert routed.redactions == {"github-token": 1}


def test_encrypted_prompt_is_added_when_the_policy_asks(
    cloud: RecordingServer, corp: RecordingServer
) -> None:
    policy = make_policy(cloud, corp, encrypt=True)
    journal = MemoryJournal()
    destinations = build_destinations(policy, OnBox())
    try:
        Router(policy, destinations, journal).complete(doc(), [], SETTINGS, CancelToken())
    finally:
        for dest in destinations.values():
            if isinstance(dest, RemoteDestination):
                dest.close()
    envelope = journal.entries[0][1]["encryptedPrompt"]
    assert envelope["bytes"] == len(cloud.requests[0].body.decode())


def test_with_the_real_journal_the_egress_entry_verifies_and_the_prompt_decrypts(
    tmp_path: Path, cloud: RecordingServer, corp: RecordingServer
) -> None:
    private, public = generate_recipient_key()
    policy = replace(make_policy(cloud, corp, encrypt=True), security_team_key=public)
    destinations = build_destinations(policy, OnBox())
    journal = open_journal(tmp_path / "journal", device_key_dir=tmp_path / "keys")
    try:
        routed = Router(policy, destinations, journal).complete(doc(), [], SETTINGS, CancelToken())
    finally:
        journal.close()
        for dest in destinations.values():
            if isinstance(dest, RemoteDestination):
                dest.close()
    [entry] = [e for e in iter_entries(tmp_path / "journal") if e.get("kind") == "egress"]
    body = entry["body"]
    assert body["promptSha256"] == cloud.requests[0].sha256 == routed.prompt_sha256
    assert entry["seq"] == routed.egress_seq
    assert decrypt_prompt(body["encryptedPrompt"], private) == cloud.requests[0].body.decode()
    assert verify_journal(tmp_path / "journal").ok


def test_a_destination_below_the_label_is_refused_right_before_sending(
    setup: Setup, cloud: RecordingServer
) -> None:
    cloud_dest = setup.destinations["cloud"]

    class Downgrading:
        """Fault injection: claims a high clearance while planning, then drops it."""

        name, kind = "cloud", "anthropic"
        calls = 0

        @property
        def clearance(self) -> str:
            Downgrading.calls += 1
            return "restricted" if Downgrading.calls <= 3 else "public"

        def prepare(self, request: CompletionRequest) -> Any:
            return cloud_dest.prepare(request)  # type: ignore[attr-defined]

        def send(self, prepared: Any, cancel: CancelToken, *, on_delta: Any = None) -> Completion:
            return cloud_dest.send(prepared, cancel, on_delta=on_delta)  # type: ignore[attr-defined,no-any-return]

        def describe(self) -> dict[str, Any]:
            return cloud_dest.describe()

    destinations: dict[str, Any] = {**setup.destinations, "cloud": Downgrading()}
    policy = setup.router.policy
    assert isinstance(policy, Policy)
    # A route the policy loader would reject; only the destination's own word counts.
    policy = replace(
        policy, routes={**policy.routes, "internal": ("cloud", "on-box")}, destinations={}
    )
    router = Router(policy, destinations, setup.journal)
    with pytest.raises(ClearanceViolation):
        router.complete(doc(name="internal"), [], SETTINGS, CancelToken())
    assert cloud.requests == []
    assert not [e for e in setup.journal.entries if e[0] == "egress"]


@pytest.mark.parametrize("kind", ["cloud", "corp"])
def test_the_first_line_is_shown_early_and_clean(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer, kind: str
) -> None:
    server = cloud if kind == "cloud" else corp
    server.set_reply("return <ONBOX_REDACTED:jwt>total\n    more()\n")
    lines: list[str] = []
    deltas: list[str] = []
    settings = replace(SETTINGS, on_first_line=lines.append, on_delta=deltas.append)
    name = "public" if kind == "cloud" else "internal"
    routed = setup.router.complete(doc(name=name), [], settings, CancelToken())
    assert routed.destination == kind
    assert lines == ["return total"]
    assert "".join(deltas).startswith("return <ONBOX_REDACTED:jwt>")


def test_a_destination_missing_from_the_built_set_is_skipped(
    setup: Setup, corp: RecordingServer
) -> None:
    destinations = {k: v for k, v in setup.destinations.items() if k != "cloud"}
    router = Router(setup.router.policy, destinations, setup.journal)
    assert router.plan(doc().decision)[0].why == "not configured or could not be built"
    routed = router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "corp" and routed.fallbacks == [("cloud", "not-configured")]


def test_an_engine_bug_falls_back_instead_of_failing_the_completion(
    setup: Setup, corp: RecordingServer
) -> None:
    class Broken:
        """Fault injection: an engine that raises something it should not."""

        name, kind, clearance = "cloud", "anthropic", "public"

        def prepare(self, request: CompletionRequest) -> Any:
            return setup.destinations["cloud"].prepare(request)  # type: ignore[attr-defined]

        def send(self, prepared: Any, cancel: CancelToken, *, on_delta: Any = None) -> Completion:
            raise RuntimeError("engine bug")

        def describe(self) -> dict[str, Any]:
            return {"name": "cloud", "kind": "anthropic"}

    destinations: dict[str, Any] = {**setup.destinations, "cloud": Broken()}
    router = Router(setup.router.policy, destinations, setup.journal)
    routed = router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "corp" and routed.fallbacks == [("cloud", "error")]
    assert not router.breaker.healthy("cloud")


def test_explain_names_the_destination_and_renders_the_route(
    setup: Setup, cloud: RecordingServer
) -> None:
    explained = setup.router.explain(doc(name="internal").decision)
    assert (explained["destination"], explained["destinationKind"], explained["model"]) == (
        "corp",
        "openai",
        "coder",
    )
    assert [s["destination"] for s in explained["route"]] == ["corp", "on-box"]
    assert explained["text"].splitlines()[0] == "internal → corp"
    cloud.push(Fault.STATUS_500)
    setup.router.complete(doc(), [], SETTINGS, CancelToken())
    public = setup.router.explain(doc().decision)
    assert public["destination"] == "corp"
    assert "failing; retry in" in public["text"]


def test_an_on_box_failure_after_a_journal_refusal_keeps_the_fallbacks(
    setup: Setup, cloud: RecordingServer
) -> None:
    """The status must learn that the journal refused, even when on-box then fails."""

    class BrokenOnBox(OnBox):
        def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
            raise ModelError("model file gone")

    destinations = {**setup.destinations, "on-box": BrokenOnBox()}
    setup.journal.fail = True
    router = Router(setup.router.policy, destinations, setup.journal)
    routed = router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.completion is None and isinstance(routed.error, ModelError)
    assert routed.fallbacks == [("cloud", "journal")]
    assert cloud.requests == []


class _Labels:
    """A labeller whose answers the test sets (fault injection for the gate)."""

    def __init__(self, policy: Policy, labels: dict[str, str]) -> None:
        import threading

        self.lock = threading.RLock()
        self.policy = policy
        self.generation = 0
        self.labels = labels
        self.tracking = False  # like the CLI: no editor, the texts handed in are current

    def current(self, uri: str) -> tuple[str, int | None] | None:
        return None

    def decide(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        name = self.labels[uri]
        return Decision(label(name), (Reason("test", label(name), "now"),), "route-test", 1)


def test_the_gate_decides_context_again_and_drops_what_became_sensitive(
    setup: Setup, cloud: RecordingServer
) -> None:
    """A context document handed in as public is restricted now: it must not ride along."""
    current = doc()
    other = doc("SECRET_PLAN = 'canary-7731'\n", uri="file:///repo/app/plan.py")
    labels = _Labels(setup.router.policy, {current.uri: "public", other.uri: "restricted"})
    router = Router(setup.router.policy, setup.destinations, setup.journal, labeller=labels)
    routed = router.complete(current, [other], SETTINGS, CancelToken())
    assert routed.destination == "cloud"
    assert b"canary-7731" not in cloud.requests[-1].body
    egress = [body for kind, body, _ in setup.journal.entries if kind == "egress"]
    assert egress[-1]["context"] == []


def test_the_gate_refuses_a_document_relabelled_after_routing_began(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    """Public when planned, internal at the gate: cloud is refused, corp may take it."""
    current = doc()
    labels = _Labels(setup.router.policy, {current.uri: "public"})
    seen: list[str] = []

    def decide(
        uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        seen.append(uri)
        # the router's own fresh decision says public; the gate's says internal
        name = "public" if len(seen) == 1 else "internal"
        return Decision(label(name), (Reason("test", label(name), "now"),), "route-test", 1)

    labels.decide = decide  # type: ignore[method-assign]
    router = Router(setup.router.policy, setup.destinations, setup.journal, labeller=labels)
    routed = router.complete(current, [], SETTINGS, CancelToken())
    assert cloud.requests == []
    assert routed.destination == "corp" and routed.fallbacks == [("cloud", "relabelled")]
    egress = [body for kind, body, _ in setup.journal.entries if kind == "egress"]
    assert [e["destination"] for e in egress] == ["corp"] and egress[0]["label"] == "internal"


def test_a_policy_swap_after_routing_began_is_refused_with_policy_changed(
    setup: Setup, cloud: RecordingServer
) -> None:
    labels = _Labels(setup.router.policy, {doc().uri: "public"})
    router = Router(setup.router.policy, setup.destinations, setup.journal, labeller=labels)
    labels.policy = make_policy(cloud, cloud)  # another policy object is in force now
    with pytest.raises(PolicyChanged):
        router.complete(doc(), [], SETTINGS, CancelToken())
    assert cloud.requests == [] and setup.journal.entries == []


def test_an_expired_policy_routes_everything_on_box(
    setup: Setup, cloud: RecordingServer, corp: RecordingServer
) -> None:
    """Its clearances no longer hold: not even a destination cleared for restricted."""
    from datetime import UTC, datetime, timedelta

    policy = replace(setup.router.policy, expires=datetime.now(UTC) - timedelta(seconds=1))
    router = Router(policy, setup.destinations, setup.journal)
    assert [s.destination for s in router.plan(doc().decision)] == ["on-box"]
    routed = router.complete(doc(), [], SETTINGS, CancelToken())
    assert routed.destination == "on-box" and cloud.requests == corp.requests == []
