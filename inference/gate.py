"""The egress gate: the one place where bytes leave the machine.

The router chooses a destination; the gate decides whether this request may go there,
now, and sends it. In order, the first five while holding the label authority's lock
(a policy swap takes the same lock, so a request never carries a decision taken under
another policy), the last only if no label-affecting event happened meanwhile::

    policy check  → the router's policy is the one in force, else PolicyChanged
    re-decision   → the document and every context document, from the text that would
                    be sent, the repo signals on disk now and the policy in force
    clearance     → refuse if the destination's clearance is below any of those labels
    build         → prompt window and context snippets, redacted, from the fresh decisions
    write-ahead   → the ``egress`` journal entry, durable, with the final label and serial
    send          → ``Destination.send(prepared)``

Nothing decided before the gate is trusted: requests queue, files change, policies swap.

Errors::

    GateError
    ├── PolicyChanged        the policy was replaced after routing began; route again
    └── ClearanceViolation   a destination below the label was about to receive text
                             (a bug; nothing was sent)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from onbox.classification.decision import Decision, Finding
from onbox.classification.labels import Label, LabelScale
from onbox.classification.policy_model import Policy
from onbox.inference.context import (
    ContextLimits,
    DocumentView,
    GatheredContext,
    Scanner,
    gather_context,
    label_in,
)
from onbox.inference.destination import CancelToken, Completion, CompletionRequest
from onbox.inference.errors import Cancelled
from onbox.inference.redaction import count_types, merge_counts, redact_window
from onbox.inference.remote import DeltaCallback, PreparedRequest

logger = logging.getLogger(__name__)


class GateError(Exception):
    """Base of the gate's own errors."""


class PolicyChanged(GateError):
    """A new policy was applied after this request was routed; route it again."""


class ClearanceViolation(GateError):
    """A destination below the document's label was about to receive text. Nothing was
    sent; report this as a bug with the policy and the route from ``onbox explain``."""


class Receipt(Protocol):
    """What ``journal.append`` returns."""

    @property
    def seq(self) -> int: ...


class Journal(Protocol):
    """The part of :mod:`onbox.audit`'s journal the gate uses."""

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Receipt: ...


class Labeller(Protocol):
    """What the gate asks :mod:`onbox.classification` (a ``LabelAuthority``)."""

    @property
    def lock(self) -> Any: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def generation(self) -> int: ...

    def decide(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision: ...

    @property
    def tracking(self) -> bool: ...

    def current(self, uri: str) -> tuple[str, int | None] | None: ...


@runtime_checkable
class Sendable(Protocol):
    """A destination the gate can send through: it renders a request, then transmits it."""

    name: str
    kind: str
    clearance: str

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """Render ``request`` into the exact bytes to send."""
        ...

    def send(
        self, prepared: PreparedRequest, cancel: CancelToken, *, on_delta: DeltaCallback | None
    ) -> Completion:
        """Transmit ``prepared``; stop promptly once ``cancel`` is set."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, kind, endpoint and model, for the journal."""
        ...


@dataclass(frozen=True)
class Outbound:
    """What may leave, as the gate cleared it (before the write-ahead entry)."""

    request: CompletionRequest
    prepared: PreparedRequest
    label: Label
    decision: Decision
    context: GatheredContext
    context_docs: Mapping[str, DocumentView]  # snippet path -> the document it came from
    redactions: dict[str, int]


@dataclass
class Passed:
    """The gate's answer: a completion that was sent, or why nothing was."""

    completion: Completion | None = None
    egress_seq: int | None = None
    prompt_sha256: str = ""
    redactions: dict[str, int] = field(default_factory=dict)
    refused: str | None = None  # fallback cause when nothing was sent
    decision: Decision | None = None  # the fresh decision of the document


@dataclass(frozen=True)
class GateRequest:
    """One attempt to send ``doc`` (with ``others`` as context) to a destination."""

    name: str
    destination: Sendable
    clearance: Label
    doc: DocumentView
    others: Sequence[DocumentView]
    prefix_chars: int
    suffix_chars: int
    max_tokens: int
    temperature: float
    stop: tuple[str, ...] = ()
    context_limits: ContextLimits = field(default_factory=ContextLimits)
    #: ``delta_hook(chat)`` builds the streaming callback once the wire format is known.
    delta_hook: Callable[[bool], DeltaCallback | None] | None = None
    fallbacks: Sequence[tuple[str, str]] = ()


class EgressGate:
    """Re-decides, journals and sends, atomically with the policy in force."""

    def __init__(
        self,
        policy: Policy,
        journal: Journal | None,
        labeller: Labeller | None,
        *,
        scan: Scanner | None,
        encrypt: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.labeller = labeller
        self._scale: LabelScale = policy.scale
        self._scan = scan
        self._encrypt = encrypt

    # -- decisions ---------------------------------------------------------------------

    def fresh(self, doc: DocumentView) -> DocumentView:
        """``doc`` with its decision taken again now (unchanged without a labeller)."""
        if self.labeller is None:
            return doc
        decision = self.labeller.decide(doc.uri, doc.text, doc.version, doc.language)
        return replace(doc, decision=decision)

    def fresh_context(self, docs: Sequence[DocumentView], current: str) -> list[DocumentView]:
        """Context documents as the editor holds them now, each decided again.

        Snippets are cut from what a document holds at the moment of sending; a document
        closed since the request was made is left out (its last text may be labelled
        differently from the snapshot, and nobody can tell any more).
        """
        out: list[DocumentView] = []
        for doc in docs:
            if doc.uri == current:
                continue
            if self.labeller is not None and self.labeller.tracking:
                now = self.labeller.current(doc.uri)
                if now is None:
                    continue
                if now[1] != doc.version or now[0] != doc.text:
                    doc = replace(doc, text=now[0], version=now[1])
            out.append(self.fresh(doc))
        return out

    def check_current(self, doc: DocumentView) -> None:
        """Raise :class:`Cancelled` if the document changed since this request was made.

        The label of a document is the label of what it holds now; text it no longer
        holds is not sent anywhere (the editor asks again for the new version).
        """
        if self.labeller is None or not self.labeller.tracking:
            return
        now = self.labeller.current(doc.uri)
        if now is None:
            raise Cancelled(f"{doc.uri} was closed while the request waited")
        if now[1] != doc.version:
            raise Cancelled(
                f"{doc.uri} changed (version {doc.version} -> {now[1]}) while the request waited"
            )

    def check_policy(self) -> None:
        """Raise :class:`PolicyChanged` unless this gate's policy is the one in force."""
        if self.labeller is not None and self.labeller.policy is not self.policy:
            raise PolicyChanged(
                f"policy {self.labeller.policy.id} serial {self.labeller.policy.serial} "
                f"replaced serial {self.policy.serial} while the request was queued"
            )

    # -- the gate ----------------------------------------------------------------------

    def send(self, req: GateRequest, cancel: CancelToken) -> Passed:
        """Clear, journal and send ``req``; :class:`Passed` says what happened."""
        lock = self.labeller.lock if self.labeller is not None else _NO_LOCK
        with lock:
            self.check_policy()
            generation = self.labeller.generation if self.labeller is not None else 0
            outbound = self._clear(req)
            if isinstance(outbound, str):
                return Passed(refused=outbound)
            body = self._egress_entry(req, outbound)
            try:
                if self.journal is None:
                    raise RuntimeError("no journal is open")
                if self._encrypt is not None:
                    body["encryptedPrompt"] = self._encrypt(outbound.prepared.body)
                receipt = self.journal.append("egress", body, durable=True)
            except Exception as exc:  # any journal failure means nothing may leave
                logger.error("egress to %s not journalled (%s); serving on-box", req.name, exc)
                return Passed(refused="journal", decision=outbound.decision)
        # The lock is not held while the destination answers (seconds, or a timeout): a
        # policy swap must not wait on a slow cloud. What was decided stands only if no
        # label-affecting event happened since; checked once more as the bytes go.
        if self.labeller is not None and (
            self.labeller.generation != generation or self.labeller.policy is not self.policy
        ):
            logger.info("labels changed after the egress entry for %s; not sent", req.doc.uri)
            return Passed(refused="relabelled", decision=outbound.decision)
        hook = req.delta_hook(outbound.prepared.chat) if req.delta_hook else None
        completion = req.destination.send(outbound.prepared, cancel, on_delta=hook)
        return Passed(
            completion,
            receipt.seq,
            outbound.prepared.sha256,
            outbound.redactions,
            decision=outbound.decision,
        )

    def _clear(self, req: GateRequest) -> Outbound | str:
        """The outbound request built from fresh decisions, or the cause of a refusal."""
        self.check_current(req.doc)
        doc = self.fresh(req.doc)
        window = self._window(doc, req.prefix_chars, req.suffix_chars)
        label = max(label_in(self._scale, doc.decision.label), window.raised)
        if req.clearance < label:
            logger.warning(
                "%s is %s now; not sent to %s (clearance %s)",
                doc.uri,
                label.name,
                req.name,
                req.clearance.name,
            )
            return "relabelled"
        others = self.fresh_context(req.others, doc.uri)
        context = gather_context(
            doc,
            others,
            req.clearance,
            self._scale,
            redact=True,
            scan=self._scan,
            limits=req.context_limits,
        )
        request = CompletionRequest(
            prefix=window.prefix,
            suffix=window.suffix,
            language=doc.language,
            path=doc.decision.path or doc.path,
            context=context.snippets,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            stop=req.stop,
        )
        # The invariant, once more, on exactly what is about to be sent, with the
        # destination's own word on its clearance read now.
        clearance = min(req.clearance, label_in(self._scale, Label(-1, req.destination.clearance)))
        if clearance < label or any(
            label_in(self._scale, Label(-1, s.label)) > clearance for s in request.context
        ):
            raise ClearanceViolation(
                f"refused to send {label.name} text to {req.name} (clearance {clearance.name})"
            )
        by_path = {(o.decision.path or o.path or o.uri): o for o in others}
        return Outbound(
            request,
            req.destination.prepare(request),
            label,
            doc.decision,
            context,
            by_path,
            merge_counts(window.redactions, context.redactions),
        )

    def _window(self, doc: DocumentView, prefix_chars: int, suffix_chars: int) -> _Window:
        lo = max(0, doc.offset - prefix_chars)
        hi = min(len(doc.text), doc.offset + suffix_chars)
        findings: list[Finding] = list(doc.decision.findings)
        raised = self._scale.lowest
        if self._scan is not None:
            try:
                scanned = self._scan(doc.text[lo:hi], doc.language)
            except Exception:
                logger.warning(
                    "content scan of %s failed; keeping it on-box", doc.uri, exc_info=True
                )
                return _Window("", "", {}, self._scale.highest)
            for f in scanned:
                findings.append(
                    Finding(f.kind, f.type, f.start + lo, f.end + lo, f.label, f.detector, f.line)
                )
                raised = max(raised, label_in(self._scale, f.label))
        # The same span found by classification and by the fresh scan counts once.
        findings = list({(f.start, f.end): f for f in reversed(findings)}.values())
        prefix = redact_window(doc.text, findings, lo, doc.offset)
        suffix = redact_window(doc.text, findings, doc.offset, hi)
        counts = count_types(set(prefix.replaced) | set(suffix.replaced))
        return _Window(prefix.text, suffix.text, counts, raised)

    def _egress_entry(self, req: GateRequest, out: Outbound) -> dict[str, Any]:
        decision = out.decision
        described = req.destination.describe()
        context = []
        for s in out.request.context:
            source = out.context_docs.get(s.path)
            context.append(
                {
                    "repo": source.decision.repo if source else None,
                    "path": s.path,
                    "label": s.label,
                    "sha256": _sha256(s.text),
                    "chars": len(s.text),
                }
            )
        return {
            "destination": req.name,
            "kind": req.destination.kind,
            "endpoint": described.get("endpoint"),
            "model": described.get("model"),
            "clearance": req.clearance.name,
            "label": out.label.name,
            "reasons": [r.to_json() for r in decision.reasons],
            "policy": {"id": decision.policy_id, "serial": decision.policy_serial},
            "generation": self.labeller.generation if self.labeller is not None else None,
            "repo": decision.repo,
            "path": decision.path,
            "documentSha256": _sha256(req.doc.text),
            "promptSha256": out.prepared.sha256,
            "bytes": len(out.prepared.body),
            "prefixChars": len(out.request.prefix),
            "suffixChars": len(out.request.suffix),
            "context": context,
            "redactions": out.redactions,
            "fallbacks": [list(f) for f in req.fallbacks],
        }


@dataclass(frozen=True)
class _Window:
    prefix: str
    suffix: str
    redactions: dict[str, int]
    raised: Label  # the highest label of content found by the fresh scan


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
