"""Route each completion by its document's label.

:meth:`Router.plan` lists the label's route from the policy — each destination with its
clearance, whether it may receive the label and whether it is healthy — and appends the
on-box model, which is always the last resort. :meth:`Router.complete` walks that plan:

1. The plan is made from a decision taken again when the request starts (queued work
   never routes on a label decided before it queued).
2. A destination is tried only if its clearance is at least the label and the circuit
   breaker lets it through. Everything that sends bytes off the machine goes through
   the :class:`~onbox.inference.gate.EgressGate`: it re-decides the document and every
   context document, atomically with the policy in force, builds the redacted prompt,
   writes the write-ahead ``egress`` entry and sends. If the entry cannot be written,
   or the fresh label is above the destination's clearance, nothing leaves and the
   request is served on-box (fallback cause ``journal`` or ``relabelled``).
3. A destination error opens its circuit (honouring ``Retry-After``) and routing falls
   back to the next destination on the same list; cancellation is not a failure and
   propagates as :class:`~onbox.inference.errors.Cancelled`.

Errors::

    onbox.inference.gate.GateError
    ├── PolicyChanged                the policy was swapped after this router was built;
    │                                route again with the new router
    └── ClearanceViolation           a destination below the label was about to receive
                                     text; a bug — nothing was sent
    onbox.inference.errors.Cancelled  propagated unchanged

The on-box model's own errors come back in :attr:`RoutedCompletion.error`, with the
fallbacks taken before it, so the caller sees both.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onbox.classification.decision import Decision, Finding
from onbox.classification.labels import Label, LabelScale
from onbox.classification.policy_model import Policy
from onbox.inference import defaults
from onbox.inference.context import (
    ContextLimits,
    DocumentView,
    Scanner,
    gather_context,
    label_in,
)
from onbox.inference.destination import (
    CancelToken,
    Completion,
    CompletionRequest,
    Destination,
    DestinationKind,
)
from onbox.inference.errors import (
    Cancelled,
    DestinationError,
    DestinationProtocolError,
    DestinationTimeout,
    InferenceError,
)
from onbox.inference.gate import (
    ClearanceViolation,
    EgressGate,
    GateError,
    GateRequest,
    Journal,
    Labeller,
    PolicyChanged,
    Sendable,
)
from onbox.inference.health import CircuitBreaker
from onbox.inference.redaction import strip_placeholders
from onbox.inference.remote import DeltaCallback, destination_refusal

logger = logging.getLogger(__name__)

__all__ = [
    "ClearanceViolation",
    "DocumentView",
    "PolicyChanged",
    "RequestSettings",
    "RouteStep",
    "RoutedCompletion",
    "Router",
    "RoutingError",
]

ON_BOX_KIND = DestinationKind.LLAMA_CPP

#: Kept for callers that caught routing's errors by this name.
RoutingError = GateError


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

    max_tokens: int = defaults.MAX_TOKENS
    temperature: float = defaults.TEMPERATURE
    prefix_chars: int = 4096
    suffix_chars: int = 1024
    stop: tuple[str, ...] = ()
    context: ContextLimits = field(default_factory=ContextLimits)
    on_delta: DeltaCallback | None = None  # raw streamed text (may hold placeholders)
    on_first_line: DeltaCallback | None = None  # the answer's first line, cleaned, once


@dataclass
class RoutedCompletion:
    """A completion (or the on-box model's error) and where it came from."""

    completion: Completion | None
    destination: str
    kind: str
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (destination, cause)
    redactions: dict[str, int] = field(default_factory=dict)
    egress_seq: int | None = None
    prompt_sha256: str = ""
    decision: Decision | None = None  # the decision the route was taken on (fresh)
    error: InferenceError | None = None  # the on-box model failed after any fallbacks


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
        labeller: Labeller | None = None,
    ) -> None:
        self.policy = policy
        self.destinations = dict(destinations)
        self.journal = journal
        self.breaker = breaker or CircuitBreaker()
        self._scale: LabelScale = policy.scale
        self._scan = scan if scan is not None else _policy_scanner(policy)
        encrypt = (
            self._encrypt if policy.security_team_key and policy.store_encrypted_prompts else None
        )
        #: Where every byte that leaves the machine passes; ``labeller`` re-decides there.
        self.gate = EgressGate(policy, journal, labeller, scan=self._scan, encrypt=encrypt)
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
        if self.policy.expired(datetime.now(UTC)):
            # An expired policy's destinations and clearances no longer hold: on-box only.
            on_box = self.destinations[self.on_box_name]
            why = f"policy {self.policy.id} expired at {self.policy.expires}: on-box only"
            cleared = self.clearance_of(self.on_box_name).name
            return [RouteStep(self.on_box_name, on_box.kind, cleared, True, True, why)]
        names = list(self.policy.routes.get(label.name, ()))
        if self.on_box_name not in names:
            names.append(self.on_box_name)
        steps: list[RouteStep] = []
        for name in names:
            dest = self.destinations.get(name)
            if dest is None:
                config = self.policy.destinations.get(name)
                refused = destination_refusal(config) if config is not None else None
                why = f"refused: {refused}" if refused else "not configured or could not be built"
                steps.append(RouteStep(name, "?", "?", False, False, why))
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
        """Serve one completion along the route of ``doc``'s label.

        The route is planned from a fresh decision; every step that would send bytes off
        the machine goes through the :class:`EgressGate`, which decides again, atomically
        with the policy in force. Raises :class:`PolicyChanged` when this router's policy
        was replaced meanwhile (build the new router and route again).
        """
        if not 0 <= doc.offset <= len(doc.text):
            raise ValueError(
                f"cursor offset {doc.offset} is outside {doc.uri} ({len(doc.text)} chars)"
            )
        self.gate.check_policy()
        self.gate.check_current(doc)
        doc = self.gate.fresh(doc)
        lo = max(0, doc.offset - settings.prefix_chars)
        hi = min(len(doc.text), doc.offset + settings.suffix_chars)
        fallbacks: list[tuple[str, str]] = []
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
            routed = self._try_remote(step.destination, doc, others, settings, cancel, fallbacks)
            if routed is not None:
                return routed
            if fallbacks and fallbacks[-1][1] == "journal":
                break  # no egress without a journal entry: on-box, now
            # "relabelled": the fresh label is above this step; a later step with a higher
            # clearance may still take it (the gate decides again there).
        return self._on_box(doc, others, settings, cancel, lo, hi, fallbacks)

    def _try_remote(
        self,
        name: str,
        doc: DocumentView,
        others: Sequence[DocumentView],
        settings: RequestSettings,
        cancel: CancelToken,
        fallbacks: list[tuple[str, str]],
    ) -> RoutedCompletion | None:
        dest = self.destinations[name]
        if not isinstance(dest, Sendable):
            raise ClearanceViolation(
                f"{name} is neither on-box nor a destination the gate can send through"
            )
        request = GateRequest(
            name=name,
            destination=dest,
            clearance=self.clearance_of(name),
            doc=doc,
            others=others,
            prefix_chars=settings.prefix_chars,
            suffix_chars=settings.suffix_chars,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            stop=settings.stop,
            context_limits=settings.context,
            delta_hook=lambda chat: _first_line_hook(settings, chat=chat),
            fallbacks=tuple(fallbacks),
        )
        try:
            passed = self.gate.send(request, cancel)
        except Cancelled:
            raise
        except DestinationError as exc:
            self.breaker.record_failure(name, str(exc), retry_after=exc.retry_after)
            fallbacks.append((name, _cause(exc)))
            return None
        except GateError:
            raise
        except Exception as exc:  # a bug in an engine must not cost the completion
            logger.exception("destination %s failed unexpectedly", name)
            self.breaker.record_failure(name, type(exc).__name__)
            fallbacks.append((name, "error"))
            return None
        if passed.completion is None:
            fallbacks.append((name, passed.refused or "refused"))
            return None
        self.breaker.record_success(name)
        completion = passed.completion
        completion.text = strip_placeholders(completion.text)
        return RoutedCompletion(
            completion,
            name,
            dest.kind,
            fallbacks,
            passed.redactions,
            passed.egress_seq,
            passed.prompt_sha256,
            passed.decision,
        )

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
        try:
            completion = dest.complete(request, cancel)
        except InferenceError as exc:
            if isinstance(exc, Cancelled):
                raise
            return RoutedCompletion(
                None, self.on_box_name, dest.kind, fallbacks, {}, None, "", doc.decision, exc
            )
        return RoutedCompletion(
            completion,
            self.on_box_name,
            dest.kind,
            fallbacks,
            {},
            None,
            completion.prompt_sha256 or _sha256(request.prefix + request.suffix),
            doc.decision,
        )


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
