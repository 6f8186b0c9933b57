"""CompletionService, the pipeline ``onbox serve`` and ``onbox complete`` share, with real parts.

A real git repository (its origin makes it ``public`` under the test policy), the real
signed journal, the real classifier and router, and a loopback OpenAI-compatible server
standing in for the cloud. No model is loaded: the on-box path is pointed at a model file
that does not exist, so a request that stays on-box ends in that model error — which is
how these tests see that it stayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import iter_entries
from onbox.classification.decision import Decision
from onbox.inference.destination import CancelToken, DestinationKind
from onbox.inference.remote import RemoteDestination
from onbox.server.pipeline import (
    PREFIX_CHARS,
    SUFFIX_CHARS,
    CompletionService,
    DocumentInput,
    Outcome,
)
from onbox.server.settings import Settings
from onbox.server.wiring import Wiring
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import Fault, RecordingServer
from tests.support.repos import make_repo

SOURCE = "def total(xs):\n    "

#: Entries the journal writes itself.
BOOKKEEPING = {"segment-header", "key-created", "key-rotated", "recovered"}


@pytest.fixture
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        server.set_reply("return sum(xs)\n")
        yield server


@pytest.fixture
def wiring(
    tmp_path: Path, cloud: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Wiring]:
    """A server's wiring: public docs repo may go to the loopback cloud, the rest stays."""
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))  # its own journal key
    policy = (
        PolicyBuilder("pipeline-test")
        .repo("github.com/acme/docs", "public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{cloud.url}/v1",
            model="loopback-coder",
            clearance="public",
            timeout=5.0,
        )
        .route("public", "cloud")
        .write(tmp_path / "policy.toml")
    )
    settings = Settings()
    settings.policy.path = str(policy)
    settings.journal.dir = str(tmp_path / "journal")
    settings.model.path = str(tmp_path / "no-such-model.gguf")
    settings.completion.max_tokens = 16
    built = Wiring(settings)
    yield built
    built.stop()
    for destination in built.router.destinations.values():
        if isinstance(destination, RemoteDestination):
            destination.close()  # its keep-alive connection to the loopback cloud


@pytest.fixture
def docs_repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "docs", {"calc.py": SOURCE}, origin="https://github.com/acme/docs.git"
    )


def doc_in(path: Path, text: str = SOURCE, offset: int | None = None) -> DocumentInput:
    return DocumentInput(
        path.as_uri(), text, len(text) if offset is None else offset, "python", version=1
    )


def entries(wiring: Wiring, tmp_path: Path) -> list[dict[str, Any]]:
    """The entries the server wrote so far (the journal's own bookkeeping left out)."""
    wiring.journal.flush()
    return [e for e in iter_entries(tmp_path / "journal") if e["kind"] not in BOOKKEEPING]


def test_public_file_goes_to_the_cloud_after_a_durable_egress_entry(
    wiring: Wiring, docs_repo: Path, cloud: RecordingServer, tmp_path: Path
) -> None:
    """A public document is served by the cloud; the egress entry precedes the completion's
    and names exactly the bytes that were sent."""
    result = wiring.service.complete(doc_in(docs_repo / "calc.py"), CancelToken())
    assert (result.outcome, result.destination) == (Outcome.SERVED, "cloud")
    assert result.destination_kind == DestinationKind.OPENAI and result.label == "public"
    assert result.text.strip() == "return sum(xs)"
    assert len(cloud.requests) == 1

    kinds = [e["kind"] for e in entries(wiring, tmp_path)]
    assert kinds == ["egress", "completion"]
    egress, completion = entries(wiring, tmp_path)
    assert result.egress_seq == egress["seq"] == completion["body"]["egressSeq"]
    assert completion["body"]["outcome"] == "served"
    assert completion["body"]["promptSha256"] == cloud.requests[0].sha256
    assert completion["body"]["destination"]["kind"] == "openai"


def test_restricted_file_never_leaves_and_the_on_box_error_is_the_outcome(
    wiring: Wiring, cloud: RecordingServer, tmp_path: Path
) -> None:
    """Outside the public repo the default label (restricted) keeps the request on-box:
    nothing reaches the cloud, no egress entry, and the missing model is the error."""
    private = make_repo(tmp_path / "private", {"app.py": SOURCE})
    result = wiring.service.complete(doc_in(private / "app.py"), CancelToken())
    assert (result.label, result.destination) == ("restricted", "on-box")
    assert result.outcome == Outcome.ERROR and "no-such-model.gguf" in (result.error or "")
    assert cloud.requests == []
    journal = entries(wiring, tmp_path)
    assert [e["kind"] for e in journal] == ["completion"]
    assert journal[0]["body"]["outcome"] == "error"
    assert journal[0]["body"]["egressSeq"] is None


def test_a_request_cancelled_before_it_runs_sends_nothing(
    wiring: Wiring, docs_repo: Path, cloud: RecordingServer
) -> None:
    """A superseded request that reaches the pipeline anyway stops before any egress."""
    cancel = CancelToken()
    cancel.cancel("superseded")
    result = wiring.service.complete(doc_in(docs_repo / "calc.py"), cancel)
    assert result.outcome == Outcome.CANCELLED and result.text == ""
    assert cloud.requests == []


def test_an_answer_that_post_processes_to_nothing_is_empty(
    wiring: Wiring, docs_repo: Path, cloud: RecordingServer
) -> None:
    """The cloud answered, but with nothing to insert: outcome empty, not served."""
    cloud.set_reply("")
    result = wiring.service.complete(doc_in(docs_repo / "calc.py"), CancelToken())
    assert (result.outcome, result.text, result.destination) == (Outcome.EMPTY, "", "cloud")


def test_a_failing_cloud_falls_back_on_box_and_says_so(
    wiring: Wiring, docs_repo: Path, cloud: RecordingServer, tmp_path: Path
) -> None:
    """A 500 from the cloud is a fallback to on-box, recorded in the result and journal."""
    cloud.set_default(Fault.STATUS_500)
    result = wiring.service.complete(doc_in(docs_repo / "calc.py"), CancelToken())
    assert result.destination == "on-box"
    assert [name for name, _ in result.fallbacks] == ["cloud"]
    completion = [e for e in entries(wiring, tmp_path) if e["kind"] == "completion"][-1]
    assert completion["body"]["fallbacks"] == [list(f) for f in result.fallbacks]
    # The request did leave (the 500 came back), so its egress entry is there too.
    assert any(e["kind"] == "egress" for e in entries(wiring, tmp_path))


def test_other_open_documents_go_along_only_where_cleared(
    wiring: Wiring, docs_repo: Path, cloud: RecordingServer, tmp_path: Path
) -> None:
    """Context from another open document in the public repo goes with the request;
    a restricted one does not."""
    (docs_repo / "helpers.py").write_text("def mean(xs):\n    return total(xs) / len(xs)\n")
    private = make_repo(tmp_path / "private", {"keys.py": "TOKEN_NAME = 'prod'\n"})
    others = [
        doc_in(docs_repo / "helpers.py", (docs_repo / "helpers.py").read_text(), 0),
        doc_in(private / "keys.py", "TOKEN_NAME = 'prod'\n", 0),
    ]
    result = wiring.service.complete(doc_in(docs_repo / "calc.py"), CancelToken(), others)
    assert result.destination == "cloud"
    sent = cloud.requests[0].body.decode()
    assert "def mean(xs)" in sent
    assert "TOKEN_NAME" not in sent


def test_the_window_is_cut_around_the_cursor(wiring: Wiring) -> None:
    """The on-box request keeps at most PREFIX_CHARS before and SUFFIX_CHARS after the
    cursor, and an offset past either end is clamped to the text."""
    text = "a" * (PREFIX_CHARS + 10) + "|" + "b" * (SUFFIX_CHARS + 10)
    cursor = PREFIX_CHARS + 10
    request = wiring.service.request_for(doc_in(Path("/w/x.py"), text, cursor))
    assert request.prefix == "a" * PREFIX_CHARS
    assert request.suffix == "|" + "b" * (SUFFIX_CHARS - 1)
    assert request.max_tokens == 16
    past = wiring.service.request_for(doc_in(Path("/w/x.py"), "abc", 99))
    assert (past.prefix, past.suffix) == ("abc", "")
    before = wiring.service.request_for(doc_in(Path("/w/x.py"), "abc", -5))
    assert (before.prefix, before.suffix) == ("", "abc")


class BrokenClassifier:
    """Fault injection: a classifier that raises."""

    def classify(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        raise RuntimeError("attributes file unreadable")


def test_a_classifier_failure_fails_closed(wiring: Wiring) -> None:
    """Whatever goes wrong while labelling, the document is treated as restricted."""
    service = CompletionService(wiring.settings, local=wiring.local, classifier=BrokenClassifier())
    decision = service.classify("file:///w/x.py", "x = 1\n")
    assert decision.label.name == "restricted"
    assert "attributes file unreadable" in decision.reasons[0].message
