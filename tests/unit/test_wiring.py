"""Wiring: which policy applies, where status says a document goes, and the journal's say.

Real parts throughout: policies written by :class:`PolicyBuilder`, a real git repository
whose origin makes it ``public``, the real signed journal, and a loopback
OpenAI-compatible server as the cloud destination. No model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onbox.audit import iter_entries
from onbox.classification.decision import Decision
from onbox.classification.policy import load_policy
from onbox.inference.destination import DestinationKind
from onbox.inference.remote import RemoteDestination
from onbox.server.settings import Settings
from onbox.server.status import ServerState
from onbox.server.wiring import Wiring
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import RecordingServer
from tests.support.repos import make_repo

DOCS_ORIGIN = "https://github.com/acme/docs.git"


def cloud_policy(name: str, url: str) -> PolicyBuilder:
    """The docs repo is public and may go to the loopback cloud; the rest stays on-box."""
    return (
        PolicyBuilder(name)
        .repo("github.com/acme/docs", "public")
        .destination("cloud", kind="openai", base_url=f"{url}/v1", model="m", clearance="public")
        .route("public", "cloud")
    )


class Notices:
    """Collects what the wiring would show the user (``window/showMessage``)."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def __call__(self, message: str) -> None:
        self.shown.append(message)


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wiring gets its own journal key directory."""
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def settings_for(tmp_path: Path, policy: Path | None = None) -> Settings:
    settings = Settings()
    settings.journal.dir = str(tmp_path / "journal")
    settings.model.path = str(tmp_path / "no-such-model.gguf")
    if policy is not None:
        settings.policy.path = str(policy)
    return settings


def close(wiring: Wiring) -> None:
    wiring.stop()
    for destination in wiring.router.destinations.values():
        if isinstance(destination, RemoteDestination):
            destination.close()


@pytest.fixture
def notices() -> Notices:
    return Notices()


@pytest.fixture
def wiring(tmp_path: Path, cloud: RecordingServer, notices: Notices) -> Iterator[Wiring]:
    policy = cloud_policy("wiring-test", cloud.url).write(tmp_path / "policy.toml")
    built = Wiring(settings_for(tmp_path, policy), notify_error=notices)
    yield built
    close(built)


def public_decision(wiring: Wiring, tmp_path: Path) -> Decision:
    repo = make_repo(tmp_path / "docs", {"calc.py": "x = 1\n"}, origin=DOCS_ORIGIN)
    decision = wiring.classifier.classify((repo / "calc.py").as_uri(), "x = 1\n", 1)
    assert decision.label.name == "public"
    return decision


def test_without_a_policy_everything_is_restricted_and_on_box(tmp_path: Path) -> None:
    """No trust root and no onbox.policy.path: the built-in fail-closed policy applies."""
    wiring = Wiring(settings_for(tmp_path))
    try:
        decision = wiring.classifier.classify("file:///anywhere/x.py", "x = 1\n", 1)
        assert decision.label.name == "restricted"
        assert wiring.destination_for(decision).kind == DestinationKind.LLAMA_CPP
        assert wiring.explain("file:///anywhere/x.py", decision).destination == "on-box"
        assert wiring.policy_warning is None
    finally:
        close(wiring)


def test_a_broken_policy_file_keeps_the_builtin_policy_and_says_why(tmp_path: Path) -> None:
    """A policy that does not parse is not half-applied: built-in policy, one clear notice."""
    broken = tmp_path / "policy.toml"
    broken.write_text("[policy]\nid = 3\n")
    notices = Notices()
    wiring = Wiring(settings_for(tmp_path, broken), notify_error=notices)
    try:
        assert wiring.policy.source == "<builtin>"
        assert wiring.policy_warning and "policy.toml" in wiring.policy_warning
        assert any("policy not loaded" in m and "on-box" in m for m in notices.shown)
    finally:
        close(wiring)


def test_status_and_explain_agree_on_the_cloud_for_a_public_file(
    wiring: Wiring, tmp_path: Path
) -> None:
    """What onbox/status shows and what onbox/explain marks as chosen are the same place,
    and explain lists every destination, with on-box last on the route."""
    decision = public_decision(wiring, tmp_path)
    assert wiring.destination_for(decision).name == "cloud"
    explained = wiring.explain("file:///docs/calc.py", decision)
    assert explained.destination == "cloud"
    names = [step.destination for step in explained.route]
    assert names[0] == "cloud" and names[-1] == "on-box" and set(names) == {"cloud", "on-box"}
    assert "→ cloud" in explained.text


def test_while_the_journal_cannot_be_written_status_says_on_box(
    wiring: Wiring, notices: Notices, tmp_path: Path
) -> None:
    """A refused egress (no journal entry) shows the user why, keeps status on-box until
    an egress is journalled again, then returns to the cloud."""
    decision = public_decision(wiring, tmp_path)
    wiring.note_route([("cloud", "journal")], None)
    assert wiring.journal_error and "cloud" in wiring.journal_error
    assert any("nothing was sent to cloud" in m for m in notices.shown)
    assert wiring.destination_for(decision).name == "on-box"
    assert wiring.journal_summary()["ok"] is False

    wiring.note_route([], 7)  # an egress entry was written again
    assert wiring.journal_error is None
    assert wiring.destination_for(decision).name == "cloud"


def test_an_unopenable_journal_keeps_everything_on_box(
    tmp_path: Path, cloud: RecordingServer
) -> None:
    """A journal directory that cannot be created: told once, and no destination leaves."""
    policy = cloud_policy("no-journal", cloud.url).write(tmp_path / "policy.toml")
    settings = settings_for(tmp_path, policy)
    blocker = tmp_path / "journal-is-a-file"
    blocker.write_text("")
    settings.journal.dir = str(blocker / "journal")
    notices = Notices()
    wiring = Wiring(settings, notify_error=notices)
    try:
        assert wiring.journal is None and wiring.journal_error
        assert any("nothing will leave this machine" in m for m in notices.shown)
        decision = public_decision(wiring, tmp_path)
        assert wiring.destination_for(decision).name == "on-box"
        assert wiring.journal_event("label-changed", {"uri": "u"}) is False
    finally:
        close(wiring)


def test_a_new_policy_relabels_and_reroutes_at_once(
    wiring: Wiring, tmp_path: Path, cloud: RecordingServer
) -> None:
    """apply_policy swaps router and labels together and tells the server to re-announce."""
    decision = public_decision(wiring, tmp_path)
    assert wiring.destination_for(decision).name == "cloud"
    told: list[str] = []
    wiring.on_policy_change = lambda: told.append("changed")
    stricter = cloud_policy("stricter", cloud.url)
    stricter.repos.clear()  # the docs repo is no longer public
    wiring.apply_policy(load_policy(stricter.write(tmp_path / "stricter.toml")))
    assert told == ["changed"]
    assert wiring.service.router is wiring.router and wiring.policy.id == "stricter"
    again = wiring.classifier.classify((tmp_path / "docs" / "calc.py").as_uri(), "x = 1\n", 2)
    assert again.label.name == "restricted"
    assert wiring.destination_for(again).name == "on-box"


def test_start_and_stop_are_journalled_and_the_journal_verifies(
    wiring: Wiring, tmp_path: Path
) -> None:
    """The server's own entries chain and sign: verifyJournal says ok and counts them."""
    wiring.start()
    assert wiring.journal_event("label-changed", {"uri": "u", "from": "public", "to": "x"})
    verified = wiring.verify_journal()
    assert verified.ok and verified.error is None and verified.entries >= 2
    wiring.stop()
    kinds = [e["kind"] for e in iter_entries(tmp_path / "journal")]
    assert kinds.index("server-start") < kinds.index("label-changed") < kinds.index("server-stop")


def test_policy_pull_without_sources_says_so(wiring: Wiring) -> None:
    pulled = wiring.policy_pull()
    assert pulled.applied is False and pulled.message == "no policy sources are configured"
    assert pulled.serial == wiring.policy.serial


def test_health_reports_the_state_it_is_given_and_the_journal(wiring: Wiring) -> None:
    """onbox/health passes the server's model state through and describes the journal."""
    report = wiring.health(ServerState.LOADING, None)
    assert report["model"]["state"] == "loading" and report["model"]["loaded"] is False
    assert report["journal"]["writable"] is True
    assert report["trustRoot"]["present"] is False
    assert report["policy"]["id"] == "wiring-test"
