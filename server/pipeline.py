"""The request pipeline, shared by ``onbox serve`` and ``onbox complete``.

classify → route → build the request → generate → post-process → journal. Nothing here
knows about LSP; the language server and the CLI both call :class:`CompletionService`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from onbox.classification.authority import LabelAuthority
from onbox.classification.decision import Decision, fail_closed
from onbox.classification.labels import LabelScale
from onbox.inference.context import DocumentView
from onbox.inference.destination import CancelToken, Completion, CompletionRequest, Destination
from onbox.inference.errors import Cancelled, InferenceError
from onbox.inference.gate import PolicyChanged
from onbox.inference.local import LlamaCppDestination, ModelSettings, OnBoxModel
from onbox.inference.postprocess import postprocess
from onbox.inference.routing import RequestSettings, RoutedCompletion, Router
from onbox.server.settings import Settings

logger = logging.getLogger(__name__)

#: Characters of text kept on each side of the cursor before token budgeting.
PREFIX_CHARS = 24_000
SUFFIX_CHARS = 4_000


class ClassifierLike(Protocol):
    """What the pipeline needs from :mod:`onbox.classification`."""

    def classify(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision: ...


class JournalLike(Protocol):
    """What the pipeline needs from :mod:`onbox.audit`."""

    def append(self, kind: str, body: Any, *, durable: bool = False) -> Any: ...


class FailClosedClassifier:
    """Labels every document with the highest label (used when no classifier is wired)."""

    def __init__(self, scale: LabelScale | None = None) -> None:
        self.scale = scale or LabelScale()

    def classify(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        """Every document: highest label, with the reason."""
        return fail_closed(
            self.scale.highest, "no classifier is configured; every file is restricted"
        )


class Outcome(StrEnum):
    """How a completion ended (``outcome`` in the journal and in ``onbox complete --json``)."""

    SERVED = "served"
    EMPTY = "empty"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class DocumentInput:
    """One document at one cursor position."""

    uri: str
    text: str
    offset: int
    language: str | None = None
    version: int | None = None


@dataclass
class CompletionResult:
    """What the editor gets, plus what the status item and ``--json`` show."""

    id: str
    text: str
    label: str
    destination: str
    destination_kind: str
    model: str
    outcome: Outcome
    raw: str = ""
    reasons: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (destination, cause)
    egress_seq: int | None = None  # the write-ahead entry of a request that left the machine
    tokens_in: int = 0  # prompt tokens, as the destination counted them
    tokens_out: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (``onbox complete --json``)."""
        return {
            "id": self.id,
            "suggestion": self.text,
            "label": self.label,
            "destination": self.destination,
            "destinationKind": self.destination_kind,
            "model": self.model,
            "outcome": self.outcome,
            "reasons": self.reasons,
            "timings": self.timings,
            "error": self.error,
        }


def uri_to_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI, else ``None``."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def reason_lines(decision: Decision) -> list[str]:
    """Human-readable one-liners for a decision's reasons."""
    out = []
    for r in decision.reasons:
        where = f" ({r.source})" if r.source else ""
        out.append(f"{r.signal}: {r.message}{where} → {r.label.name}")
    return out


class CompletionService:
    """Classify, route and complete one request at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        local: OnBoxModel | None = None,
        classifier: ClassifierLike | None = None,
        journal: JournalLike | None = None,
        router: Router | None = None,
        actors: Any | None = None,
        labels: LabelAuthority | None = None,
    ) -> None:
        self.settings = settings
        self.local: OnBoxModel = local or LlamaCppDestination(model_settings(settings))
        self.classifier: ClassifierLike = classifier or FailClosedClassifier()
        self.journal = journal
        self.router = router
        self.actors = actors
        self.labels = labels

    def classify(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        """The document's decision; never raises (fail closed)."""
        try:
            return self.classifier.classify(uri, text, version, language)
        except Exception as exc:  # the classifier must never take the server down
            logger.exception("classifier failed for %s", uri)
            return fail_closed(LabelScale().highest, f"classifier error: {exc}")

    def destination_for(self, decision: Decision) -> Destination:
        """The destination a document with ``decision`` is served from (for status)."""
        if self.router is None:
            return self.local
        return self.router.destinations[self.router.destination_for(decision).destination]

    def request_for(self, doc: DocumentInput) -> CompletionRequest:
        """The windowed request for the on-box model."""
        c = self.settings.completion
        offset = max(0, min(doc.offset, len(doc.text)))
        return CompletionRequest(
            prefix=doc.text[max(0, offset - PREFIX_CHARS) : offset],
            suffix=doc.text[offset : offset + SUFFIX_CHARS],
            language=doc.language,
            path=str(uri_to_path(doc.uri) or doc.uri),
            max_tokens=c.max_tokens,
            temperature=c.temperature,
        )

    def complete(
        self,
        doc: DocumentInput,
        cancel: CancelToken,
        others: Sequence[DocumentInput] = (),
    ) -> CompletionResult:
        """Run the whole pipeline for one request.

        The label is decided here, when the request is served, never carried in from
        before it queued; for anything that leaves the machine the egress gate decides
        once more, atomically with the policy in force.
        """
        started = time.perf_counter()
        if self.actors is not None:
            self.actors.set_document(uri_to_path(doc.uri))
        decision = self.classify(doc.uri, doc.text, doc.version, doc.language)
        cid = uuid.uuid4().hex
        request = self.request_for(doc)
        destination: Destination = self.local
        outcome = Outcome.SERVED
        error: str | None = None
        completion: Completion | None = None
        routed: RoutedCompletion | None = None
        try:
            if self.router is None:
                completion = self.local.complete(request, cancel)
            else:
                routed = self._route(doc, others, cancel)
                decision = routed.decision or decision
                destination = self.router.destinations[routed.destination]
                completion = routed.completion
                if routed.error is not None:
                    raise routed.error
        except Cancelled:
            outcome = Outcome.CANCELLED
        except InferenceError as exc:
            outcome, error = Outcome.ERROR, str(exc)
        text = ""
        if completion is not None:
            if completion.finish_reason == "cancelled" or cancel.cancelled:
                outcome = Outcome.CANCELLED
            else:
                text = postprocess(completion.text, request.prefix, request.suffix, doc.language)
                if not text:
                    outcome = Outcome.EMPTY
        timings = dict(completion.timings) if completion else {}
        timings["pipeline_total"] = time.perf_counter() - started
        result = CompletionResult(
            id=cid,
            text=text,
            label=decision.label.name,
            destination=destination.name,
            destination_kind=destination.kind,
            model=(completion.model if completion else self.local.model_name),
            outcome=outcome,
            raw=completion.text if completion else "",
            reasons=reason_lines(decision),
            timings=timings,
            error=error,
            fallbacks=list(routed.fallbacks) if routed else [],
            egress_seq=routed.egress_seq if routed else None,
            tokens_in=completion.tokens_in if completion else 0,
            tokens_out=completion.tokens_out if completion else 0,
        )
        self._journal_completion(doc, decision, result, completion, routed)
        return result

    def _route(
        self, doc: DocumentInput, others: Sequence[DocumentInput], cancel: CancelToken
    ) -> RoutedCompletion:
        """Route through the current router; once more if a policy swap voided the first."""
        target = self._view(doc, max(0, min(doc.offset, len(doc.text))))
        context = [self._view(o, 0) for o in others]
        c = self.settings.completion
        settings = RequestSettings(
            max_tokens=c.max_tokens,
            temperature=c.temperature,
            prefix_chars=PREFIX_CHARS,
            suffix_chars=SUFFIX_CHARS,
        )
        for attempt in range(3):
            router = self.router
            assert router is not None
            try:
                routed: RoutedCompletion = router.complete(target, context, settings, cancel)
                return routed
            except PolicyChanged as exc:
                logger.info("routing again (%s)", exc)
                if self.labels is not None:
                    self.labels.settled()  # the swap installs the new router, then labels
                if attempt == 2:
                    raise InferenceError(f"the policy kept changing while routing: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _view(self, d: DocumentInput, offset: int) -> DocumentView:
        decision = self.classify(d.uri, d.text, d.version, d.language)
        path = decision.path or str(uri_to_path(d.uri) or d.uri)
        return DocumentView(d.uri, path, d.text, offset, d.language, decision, d.version)

    def _describe(self, name: str) -> dict[str, Any]:
        if self.router is not None and name in self.router.destinations:
            return dict(self.router.destinations[name].describe())
        return self.local.describe()

    def _journal_completion(
        self,
        doc: DocumentInput,
        decision: Decision,
        result: CompletionResult,
        completion: Completion | None,
        routed: RoutedCompletion | None,
    ) -> None:
        if self.journal is None:
            return
        body = {
            "id": result.id,
            "uri": doc.uri,
            "path": decision.path,
            "repo": decision.repo,
            "documentSha256": hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest(),
            "label": result.label,
            "reasons": [r.to_json() for r in decision.reasons],
            "policy": {"id": decision.policy_id, "serial": decision.policy_serial},
            "destination": self._describe(result.destination),
            "fallbacks": [list(f) for f in result.fallbacks],
            "redactions": dict(routed.redactions) if routed else {},
            "egressSeq": result.egress_seq,
            "promptSha256": completion.prompt_sha256 if completion else None,
            "tokensIn": completion.tokens_in if completion else 0,
            "tokensOut": completion.tokens_out if completion else 0,
            "bytesSent": completion.bytes_sent if completion else 0,
            "bytesReceived": completion.bytes_received if completion else 0,
            "latencyMs": round(result.timings.get("pipeline_total", 0.0) * 1000, 3),
            "outcome": result.outcome,
            "error": result.error,
        }
        try:
            self.journal.append("completion", body)
        except Exception:
            logger.exception("could not journal completion %s", result.id)


def model_settings(settings: Settings) -> ModelSettings:
    """The on-box model's settings from the server settings."""
    m, c = settings.model, settings.completion
    return ModelSettings(
        path=m.path,
        context_size=m.context_size,
        threads=m.threads,
        gpu_layers=m.gpu_layers,
        max_tokens=c.max_tokens,
        temperature=c.temperature,
        prefix_tokens=c.prefix_tokens,
        suffix_tokens=c.suffix_tokens,
    )
