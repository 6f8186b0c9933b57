"""Route each completion by its document's label, and prove what left the machine.

:meth:`Router.plan` lists the label's route from the policy — each destination with its
clearance, whether it may receive the label and whether it is healthy — and appends the
on-box model, which is always the last resort. :meth:`Router.complete` walks that plan:

1. A destination is tried only if its clearance is at least the label (checked again
   right before sending) and the circuit breaker lets it through.
2. For a destination other than on-box, the prompt is built from the window around the
   cursor with secrets and PII replaced by placeholders, plus snippets of other open
   documents whose label is within the destination's clearance (also redacted).
3. Write-ahead: the ``egress`` journal entry — hashes, sizes, label, reasons,
   destination and redaction counts, never raw text — is appended durably before the
   first byte is sent. If it cannot be written, nothing leaves: the request is served
   on-box (fallback cause ``journal``).
4. A destination error opens its circuit (honouring ``Retry-After``) and routing falls
   back to the next destination on the same list; cancellation is not a failure and
   propagates as :class:`~onbox.inference.errors.Cancelled`.

Errors::

    RoutingError                     (this module)
    └── ClearanceViolation           a destination below the label was about to receive
                                     text; a bug — nothing was sent
    onbox.inference.errors.Cancelled  propagated unchanged
    onbox.inference.errors.ModelError from the on-box model, propagated unchanged
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
from onbox.inference.destination import CancelToken, Completion, CompletionRequest, Destination
from onbox.inference.errors import (
    Cancelled,
    DestinationError,
    DestinationProtocolError,
    DestinationTimeout,
)
from onbox.inference.health import CircuitBreaker
from onbox.inference.redaction import (
    count_types,
    merge_counts,
    redact_window,
    strip_placeholders,
)
from onbox.inference.remote import DeltaCallback, PreparedRequest, RemoteDestination

logger = logging.getLogger(__name__)

__all__ = [
    "ClearanceViolation",
    "DocumentView",
    "RequestSettings",
    "RouteStep",
    "RoutedCompletion",
    "Router",
    "RoutingError",
]

ON_BOX_KIND = "llama-cpp"


class RoutingError(Exception):
    """Base of routing's own errors."""


class ClearanceViolation(RoutingError):
    """A destination below the document's label was about to receive text. Nothing was
    sent; report this as a bug with the policy and the route from ``onbox explain``."""


class Receipt(Protocol):
    """What ``journal.append`` returns."""

    @property
    def seq(self) -> int: ...


class Journal(Protocol):
    """The part of :mod:`onbox.audit`'s journal routing uses."""

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Receipt: ...


@dataclass(frozen=True)
class RouteStep:
    """One destination on a label's route, as ``onbox explain`` and ``onbox/status`` show it."""

    destination: str
    kind: str
    clearance: str
    eligible: bool
    healthy: bool
    why: str

    def to_json(self) -> dict[str, Any]:
        """The ``route`` items of ``onbox/explain``."""
        return {
            "destination": self.destination,
            "kind": self.kind,
            "clearance": self.clearance,
            "eligible": self.eligible,
            "healthy": self.healthy,
            "why": self.why,
        }


@dataclass(frozen=True)
class RequestSettings:
    """How big a prompt to build and how much to generate."""

    max_tokens: int = 64
    temperature: float = 0.2
    prefix_chars: int = 4096
    suffix_chars: int = 1024
    stop: tuple[str, ...] = ()
    context: ContextLimits = field(default_factory=ContextLimits)
    on_delta: DeltaCallback | None = None  # raw streamed text (may hold placeholders)
    on_first_line: DeltaCallback | None = None  # the answer's first line, cleaned, once


@dataclass
class RoutedCompletion:
    """A completion and where it came from."""

    completion: Completion
    destination: str
    kind: str
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (destination, cause)
    redactions: dict[str, int] = field(default_factory=dict)
    egress_seq: int | None = None
    prompt_sha256: str = ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _cause(exc: DestinationError) -> str:
    if isinstance(exc, DestinationTimeout):
        return "timeout"
    if isinstance(exc, DestinationProtocolError):
        return "protocol-error"
    return "unavailable"


class Router:
    """Chooses a destination per request and sends it there, journalling every egress.

    Build a new router when the policy changes and pass the old one's ``breaker`` so
    that destination health carries over.
    """

    def __init__(
        self,
        policy: Policy,
        destinations: Mapping[str, Destination],
        journal: Journal | None,
        *,
        breaker: CircuitBreaker | None = None,
        scan: Scanner | None = None,
    ) -> None:
        self.policy = policy
        self.destinations = dict(destinations)
        self.journal = journal
        self.breaker = breaker or CircuitBreaker()
        self._scale: LabelScale = policy.scale
        self._scan = scan if scan is not None else _policy_scanner(policy)
        on_box = [n for n, d in self.destinations.items() if d.kind == ON_BOX_KIND]
        if not on_box:
            raise ValueError("routing needs an on-box (llama-cpp) destination as the last resort")
        self.on_box_name = on_box[0]

    # -- planning --------------------------------------------------------------------
    def label_of(self, decision: Decision) -> Label:
        """The decision's label on this policy's scale (unknown names rank highest)."""
        return label_in(self._scale, decision.label)

    def clearance_of(self, name: str) -> Label:
        """The lower of the destination's own clearance and the policy's for ``name``."""
        dest = self.destinations[name]
        clearance = label_in(self._scale, Label(-1, dest.clearance))
        config = self.policy.destinations.get(name)
        if config is not None:
            clearance = min(clearance, label_in(self._scale, config.clearance))
        return clearance

    def plan(self, decision: Decision) -> list[RouteStep]:
        """The label's route in order, ending with the on-box model."""
        label = self.label_of(decision)
        names = list(self.policy.routes.get(label.name, ()))
        if self.on_box_name not in names:
            names.append(self.on_box_name)
        steps: list[RouteStep] = []
        for name in names:
            dest = self.destinations.get(name)
            if dest is None:
                steps.append(
                    RouteStep(name, "?", "?", False, False, "not configured or could not be built")
                )
                continue
            clearance = self.clearance_of(name)
            if name == self.on_box_name:
                steps.append(
                    RouteStep(
                        name, dest.kind, clearance.name, True, True, "on-box: the last resort"
                    )
                )
                continue
            eligible = clearance >= label
            healthy = self.breaker.healthy(name)
            if not eligible:
                why = f"clearance {clearance.name} < {label.name}"
            elif not healthy:
                why = f"failing; retry in {self.breaker.retry_in(name):.0f}s"
            else:
                why = f"clearance {clearance.name} >= {label.name}"
            steps.append(RouteStep(name, dest.kind, clearance.name, eligible, healthy, why))
        return steps

    def destination_for(self, decision: Decision) -> RouteStep:
        """The step a request would go to now (for ``onbox/status``)."""
        for step in self.plan(decision):
            if step.eligible and step.healthy:
                return step
        raise AssertionError("the on-box step is always eligible")  # pragma: no cover

    def explain(self, decision: Decision) -> dict[str, Any]:
        """The route fields of ``onbox/explain`` and ``onbox/status`` for ``decision``.

        ``destination``, ``destinationKind`` and ``model`` name where a completion goes
        now; ``route`` lists every step; ``text`` renders the route for people.
        """
        steps = self.plan(decision)
        chosen = next(s for s in steps if s.eligible and s.healthy)
        model = self.destinations[chosen.destination].describe().get("model")
        lines = [f"{self.label_of(decision).name} → {chosen.destination}"]
        for step in steps:
            mark = (
                "→"
                if step is chosen
                else ("✗" if not step.eligible else ("…" if not step.healthy else " "))
            )
            lines.append(
                f"  {mark} {step.destination} ({step.kind}, clearance {step.clearance}): {step.why}"
            )
        return {
            "destination": chosen.destination,
            "destinationKind": chosen.kind,
            "model": model,
            "route": [s.to_json() for s in steps],
            "text": "\n".join(lines),
        }

    # -- serving ---------------------------------------------------------------------
    def complete(
        self,
        doc: DocumentView,
        others: Sequence[DocumentView],
        settings: RequestSettings,
        cancel: CancelToken,
    ) -> RoutedCompletion:
        """Serve one completion along the route of ``doc``'s label."""
        label = self.label_of(doc.decision)
        if not 0 <= doc.offset <= len(doc.text):
            raise ValueError(
                f"cursor offset {doc.offset} is outside {doc.uri} ({len(doc.text)} chars)"
            )
        lo = max(0, doc.offset - settings.prefix_chars)
        hi = min(len(doc.text), doc.offset + settings.suffix_chars)
        fallbacks: list[tuple[str, str]] = []
        window: _Window | None = None
        for step in self.plan(doc.decision):
            if cancel.cancelled:
                raise Cancelled(cancel.reason or "cancelled")
            if step.destination == self.on_box_name:
                break
            if step.kind == "?":
                fallbacks.append((step.destination, "not-configured"))
                continue
            if not step.eligible:
                continue
            if not step.healthy:
                fallbacks.append((step.destination, "circuit-open"))
                continue
            if window is None:
                window = self._window(doc, lo, hi)
                label = max(label, window.raised)
                if window.raised > self.label_of(doc.decision):
                    logger.warning(
                        "content in %s's window raises its label to %s", doc.uri, label.name
                    )
            if self.clearance_of(step.destination) < label:
                continue  # a content scan raised the label above this one
            routed = self._try_remote(
                step.destination, doc, others, settings, cancel, label, window, fallbacks
            )
            if routed is not None:
                return routed
            if fallbacks and fallbacks[-1][1] == "journal":
                break  # no egress without a journal entry: on-box, now
        return self._on_box(doc, others, settings, cancel, lo, hi, fallbacks)

    def _window(self, doc: DocumentView, lo: int, hi: int) -> _Window:
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

    def _try_remote(
        self,
        name: str,
        doc: DocumentView,
        others: Sequence[DocumentView],
        settings: RequestSettings,
        cancel: CancelToken,
        label: Label,
        window: _Window,
        fallbacks: list[tuple[str, str]],
    ) -> RoutedCompletion | None:
        dest = self.destinations[name]
        clearance = self.clearance_of(name)
        context = gather_context(
            doc,
            others,
            clearance,
            self._scale,
            redact=True,
            scan=self._scan,
            limits=settings.context,
        )
        request = CompletionRequest(
            prefix=window.prefix,
            suffix=window.suffix,
            language=doc.language,
            path=doc.decision.path or doc.path,
            context=context.snippets,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            stop=settings.stop,
        )
        prepared = dest.prepare(request) if isinstance(dest, RemoteDestination) else None
        prompt_sha = (
            prepared.sha256 if prepared is not None else _sha256(request.prefix + request.suffix)
        )
        redactions = merge_counts(window.redactions, context.redactions)
        # The invariant, once more, right before anything is sent.
        if self.clearance_of(name) < label or any(
            self._scale.parse(s.label) > self.clearance_of(name) for s in request.context
        ):
            raise ClearanceViolation(
                f"refused to send {label.name} text to {name} (clearance {clearance.name})"
            )
        body = self._egress_entry(
            name, dest, doc, label, clearance, request, prepared, context, redactions, fallbacks
        )
        try:
            if self.journal is None:
                raise RuntimeError("no journal is open")
            if (
                prepared is not None
                and self.policy.security_team_key
                and self.policy.store_encrypted_prompts
            ):
                body["encryptedPrompt"] = self._encrypt(prepared.body)
            receipt = self.journal.append("egress", body, durable=True)
        except Exception as exc:  # any journal failure means nothing may leave
            logger.error("egress to %s not journalled (%s); serving on-box", name, exc)
            fallbacks.append((name, "journal"))
            return None
        try:
            if prepared is not None:
                assert isinstance(dest, RemoteDestination)
                hook = _first_line_hook(settings, chat=prepared.chat)
                completion = dest.send(prepared, cancel, on_delta=hook)
            else:
                completion = dest.complete(request, cancel)
        except Cancelled:
            raise
        except DestinationError as exc:
            self.breaker.record_failure(name, str(exc), retry_after=exc.retry_after)
            fallbacks.append((name, _cause(exc)))
            return None
        except Exception as exc:  # a bug in an engine must not cost the completion
            logger.exception("destination %s failed unexpectedly", name)
            self.breaker.record_failure(name, type(exc).__name__)
            fallbacks.append((name, "error"))
            return None
        self.breaker.record_success(name)
        completion.text = strip_placeholders(completion.text)
        return RoutedCompletion(
            completion, name, dest.kind, fallbacks, redactions, receipt.seq, prompt_sha
        )

    def _egress_entry(
        self,
        name: str,
        dest: Destination,
        doc: DocumentView,
        label: Label,
        clearance: Label,
        request: CompletionRequest,
        prepared: PreparedRequest | None,
        context: GatheredContext,
        redactions: dict[str, int],
        fallbacks: list[tuple[str, str]],
    ) -> dict[str, Any]:
        decision = doc.decision
        described = dest.describe()
        return {
            "destination": name,
            "kind": dest.kind,
            "endpoint": described.get("endpoint"),
            "model": described.get("model"),
            "clearance": clearance.name,
            "label": label.name,
            "reasons": [r.to_json() for r in decision.reasons],
            "policy": {"id": decision.policy_id, "serial": decision.policy_serial},
            "repo": decision.repo,
            "path": decision.path,
            "documentSha256": _sha256(doc.text),
            "promptSha256": prepared.sha256
            if prepared is not None
            else _sha256(request.prefix + request.suffix),
            "bytes": len(prepared.body)
            if prepared is not None
            else len(request.prefix) + len(request.suffix),
            "prefixChars": len(request.prefix),
            "suffixChars": len(request.suffix),
            "context": [
                {"path": s.path, "label": s.label, "sha256": _sha256(s.text), "chars": len(s.text)}
                for s in request.context
            ],
            "redactions": redactions,
            "fallbacks": [list(f) for f in fallbacks],
        }

    def _encrypt(self, prompt: bytes) -> dict[str, Any]:
        store = getattr(self.journal, "store_encrypted_prompt", None)
        if store is None:
            raise RuntimeError(
                "the policy asks for encrypted prompts; the journal cannot store them"
            )
        result: dict[str, Any] = store(prompt.decode("utf-8"), self.policy.security_team_key)
        return result

    def _on_box(
        self,
        doc: DocumentView,
        others: Sequence[DocumentView],
        settings: RequestSettings,
        cancel: CancelToken,
        lo: int,
        hi: int,
        fallbacks: list[tuple[str, str]],
    ) -> RoutedCompletion:
        dest = self.destinations[self.on_box_name]
        context = gather_context(
            doc, others, self._scale.highest, self._scale, redact=False, limits=settings.context
        )
        request = CompletionRequest(
            prefix=doc.text[lo : doc.offset],
            suffix=doc.text[doc.offset : hi],
            language=doc.language,
            path=doc.decision.path or doc.path,
            context=context.snippets,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            stop=settings.stop,
        )
        completion = dest.complete(request, cancel)
        return RoutedCompletion(
            completion,
            self.on_box_name,
            dest.kind,
            fallbacks,
            {},
            None,
            completion.prompt_sha256 or _sha256(request.prefix + request.suffix),
        )


@dataclass(frozen=True)
class _Window:
    prefix: str
    suffix: str
    redactions: dict[str, int]
    raised: Label  # the highest label of content found by the fresh scan


def _first_line_hook(settings: RequestSettings, *, chat: bool) -> DeltaCallback | None:
    """Pass deltas on, and report the first complete line once, placeholders removed."""
    if settings.on_first_line is None:
        return settings.on_delta
    report = settings.on_first_line
    parts: list[str] = []
    fired = False

    def hook(delta: str) -> None:
        nonlocal fired
        if settings.on_delta is not None:
            settings.on_delta(delta)
        if fired:
            return
        parts.append(delta)
        text = "".join(parts)
        if chat:
            text = _FENCE_OPEN.sub("", text, count=1)
        start = len(text) - len(text.lstrip())
        end = text.find("\n", start)
        if end != -1 and not (chat and text.startswith("```")):
            fired = True
            report(strip_placeholders(text[:end]))

    return hook


_FENCE_OPEN = re.compile(r"^\s*```[\w+#.-]*\n")


def _policy_scanner(policy: Policy) -> Scanner | None:
    try:
        from onbox.classification.content import scan_content
    except ImportError:
        logger.info("onbox.classification.content is not available; relying on decision findings")
        return None

    def scan(text: str, language: str | None) -> Sequence[Finding]:
        found: Sequence[Finding] = scan_content(text, language, policy)
        return found

    return scan
