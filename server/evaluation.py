"""``onbox eval``'s run: every task through the editor's pipeline, once per destination.

For each chosen destination the run builds a :class:`CompletionService` whose router is
a :class:`~onbox.inference.pinned_route.PinnedRouter` over the wiring's own router:
classification, the egress gate (fresh decision, write-ahead journal entry, redaction),
the destination, post-processing and the completion journal entry are the editor's.
Only the choice of destination is the evaluator's, and labels still rule it:

* a task whose label is above the destination's clearance is never sent; it is kept
  as ``not-allowed`` with the reason, so the report lists it rather than dropping it;
* a task the gate refused, or whose destination failed, is served on-box by the router
  as always; it is kept as ``fallback`` and not counted as the pinned destination's.

Tasks run in order, each against every destination before the next task, so that a run
stopped with Ctrl-C (:attr:`EvalReport.interrupted`) compares destinations on the same
tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onbox.audit.cost import spend
from onbox.classification.policy_model import DestinationCost
from onbox.inference.destination import CancelToken
from onbox.inference.fim_metrics import Sample, Score, score, summarise
from onbox.inference.fim_tasks import FimTask
from onbox.inference.pinned_route import PinnedRouter
from onbox.server.pipeline import CompletionService, DocumentInput
from onbox.server.wiring import Wiring

#: statuses of one task at one destination
SCORED, NOT_ALLOWED, FALLBACK, ERROR = "scored", "not-allowed", "fallback", "error"


class UnknownDestination(ValueError):
    """A ``--destinations`` name the policy does not configure (or that could not be built)."""


@dataclass(frozen=True)
class Price:
    """What a million tokens in and out cost at one destination."""

    per_million_in: float
    per_million_out: float
    currency: str = "USD"
    source: str = "--price"  # --price | policy | on-box

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """The cost of these token counts, in ``currency``."""
        return (tokens_in * self.per_million_in + tokens_out * self.per_million_out) / 1e6

    @classmethod
    def from_policy(cls, cost: DestinationCost) -> Price:
        """The policy's ``[destinations.NAME.cost]`` as a per-token price.

        Self-hosted hardware is priced by the machine time the tokens take
        (:func:`onbox.audit.cost.spend`), which is linear in the tokens, so a million of each
        prices it exactly as ``onbox journal stats --cost`` does.
        """
        return cls(
            float(spend(cost, 1_000_000, 0)),
            float(spend(cost, 0, 1_000_000)),
            cost.currency,
            "policy",
        )


ON_BOX_PRICE = Price(0.0, 0.0, source="on-box")  # the workstation is already paid for


@dataclass(frozen=True)
class TaskOutcome:
    """One task at one destination."""

    task: FimTask
    destination: str
    label: str
    status: str  # SCORED | NOT_ALLOWED | FALLBACK | ERROR
    answer: str = ""
    score: Score | None = None
    latency: float = 0.0  # seconds in the pipeline
    tokens_in: int = 0
    tokens_out: int = 0
    served_by: str = ""
    why: str = ""

    def to_json(self, *, text: bool = False) -> dict[str, Any]:
        """One ``items`` entry of ``--json`` (the code itself only with ``text``)."""
        data: dict[str, Any] = {
            **self.task.to_json(),
            "destination": self.destination,
            "label": self.label,
            "status": self.status,
            "servedBy": self.served_by or None,
            "why": self.why or None,
            "latencySeconds": round(self.latency, 4),
            "tokensIn": self.tokens_in,
            "tokensOut": self.tokens_out,
        }
        if self.score is not None:
            s = self.score
            data.update(
                exact=s.exact,
                editSimilarity=round(s.similarity, 4),
                acceptedChars=s.accepted,
                empty=s.empty,
                parses=s.parses,
                brokeParse=s.broke,
            )
        if text:
            data.update(expected=self.task.expected, answer=self.answer)
        return data


@dataclass
class EvalReport:
    """Everything ``onbox eval`` prints: outcomes, summaries, timings."""

    destinations: list[dict[str, Any]]  # name, kind, clearance, model
    labels: list[str]  # the policy's labels, lowest first
    tasks: list[FimTask]
    outcomes: list[TaskOutcome] = field(default_factory=list)
    interrupted: bool = False
    prices: Mapping[str, Price] = field(default_factory=dict)
    sampling_seconds: float = 0.0
    completion_seconds: float = 0.0
    total_seconds: float = 0.0
    seed: int = 0

    @property
    def completed_tasks(self) -> int:
        """Tasks that ran against every destination."""
        per_task: dict[str, int] = {}
        for o in self.outcomes:
            per_task[o.task.id] = per_task.get(o.task.id, 0) + 1
        return sum(1 for n in per_task.values() if n == len(self.destinations))

    @property
    def overhead(self) -> float | None:
        """The evaluator's own time (sampling, scoring, checks) over the completions' time."""
        if self.completion_seconds <= 0:
            return None
        return max(0.0, self.total_seconds - self.completion_seconds) / self.completion_seconds

    def rows(self) -> list[dict[str, Any]]:
        """One summary per destination and label (labels with no task left out), then
        one ``label: "all"`` row per destination."""
        out = []
        for dest in self.destinations:
            name = dest["name"]
            mine = [o for o in self.outcomes if o.destination == name]
            for label in [*self.labels, "all"]:
                group = mine if label == "all" else [o for o in mine if o.label == label]
                if not group:
                    continue
                out.append(self._row(name, dest.get("kind", ""), label, group))
        return out

    def _row(self, name: str, kind: str, label: str, group: list[TaskOutcome]) -> dict[str, Any]:
        samples = [
            Sample(o.score, o.latency, o.tokens_in, o.tokens_out)
            for o in group
            if o.status == SCORED and o.score is not None
        ]
        row = {"destination": name, "label": label, **summarise(samples)}
        row["tasks"] = len(group)
        row["scored"] = len(samples)
        row["notAllowed"] = sum(o.status == NOT_ALLOWED for o in group)
        row["fallbacks"] = sum(o.status == FALLBACK for o in group)
        row["errors"] = sum(o.status == ERROR for o in group)
        price = self.prices.get(name) or (ON_BOX_PRICE if kind == "llama-cpp" else None)
        row["cost"] = price.cost(row["tokensIn"], row["tokensOut"]) if price else None
        row["currency"] = price.currency if price else None
        row["costSource"] = price.source if price else None
        return row

    def to_json(self, *, text: bool = False) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "version": 1,
            "seed": self.seed,
            "interrupted": self.interrupted,
            "tasks": len(self.tasks),
            "completedTasks": self.completed_tasks,
            "destinations": self.destinations,
            "labels": self.labels,
            "results": self.rows(),
            "timing": {
                "samplingSeconds": round(self.sampling_seconds, 4),
                "completionSeconds": round(self.completion_seconds, 4),
                "totalSeconds": round(self.total_seconds, 4),
                "overhead": self.overhead,
            },
            "items": [o.to_json(text=text) for o in self.outcomes],
        }


class Evaluation:
    """Runs tasks through one pinned pipeline per destination of ``wiring``."""

    def __init__(self, wiring: Wiring, destinations: Sequence[str]) -> None:
        known = wiring.router.destinations
        unknown = [d for d in destinations if d not in known]
        if unknown:
            raise UnknownDestination(
                f"unknown destination {', '.join(unknown)}; the policy configures "
                f"{', '.join(known)}"
            )
        self.wiring = wiring
        self.names = list(dict.fromkeys(destinations))
        self.routers = {n: PinnedRouter(wiring.router, n, wiring.labels) for n in self.names}
        self.services = {
            n: CompletionService(
                wiring.settings,
                local=wiring.local,
                classifier=wiring.classifier,
                journal=wiring.journal,
                router=router,
                actors=wiring.actors,
                labels=wiring.labels,
            )
            for n, router in self.routers.items()
        }

    def close(self) -> None:
        """Close the remote destinations' connections (the run owns the wiring)."""
        for name in self.names:
            dest = self.routers[name].destinations[name]
            close = getattr(dest, "close", None)
            if dest.kind != "llama-cpp" and callable(close):
                close()

    def policy_prices(self) -> dict[str, Price]:
        """Prices from the policy's ``[destinations.NAME.cost]``, for the chosen names."""
        configs = self.wiring.policy.destinations
        return {
            name: Price.from_policy(cost)
            for name in self.names
            if name in configs and (cost := configs[name].cost) is not None
        }

    def describe(self) -> list[dict[str, Any]]:
        """Name, kind, clearance and model of each destination."""
        out = []
        for name in self.names:
            router = self.routers[name]
            info = router.destinations[name].describe()
            out.append(
                {
                    "name": name,
                    "kind": router.destinations[name].kind,
                    "clearance": router.clearance_of(name).name,
                    "model": info.get("model"),
                }
            )
        return out

    def run(
        self,
        tasks: Sequence[FimTask],
        *,
        on_outcome: Callable[[TaskOutcome], None] | None = None,
        prices: Mapping[str, Price] | None = None,
        seed: int = 0,
    ) -> EvalReport:
        """Every task against every destination; Ctrl-C ends the run with what finished."""
        started = time.perf_counter()
        report = EvalReport(
            destinations=self.describe(),
            labels=[label.name for label in self.wiring.policy.scale.labels()],
            tasks=list(tasks),
            prices=dict(prices or {}),
            seed=seed,
        )
        try:
            for task in tasks:
                done = [self.run_one(task, name) for name in self.names]
                for outcome in done:
                    report.outcomes.append(outcome)
                    if outcome.status != NOT_ALLOWED:
                        report.completion_seconds += outcome.latency
                    if on_outcome is not None:
                        on_outcome(outcome)
        except KeyboardInterrupt:
            report.interrupted = True
        report.total_seconds = time.perf_counter() - started
        return report

    def run_one(self, task: FimTask, name: str) -> TaskOutcome:
        """``task`` through the pipeline pinned to ``name`` (or why it may not go there)."""
        service, router = self.services[name], self.routers[name]
        doc = DocumentInput(task.path.as_uri(), task.document, task.offset, task.language)
        decision = service.classify(doc.uri, doc.text, None, doc.language)
        refused = router.refusal(decision)
        if refused is not None:
            return TaskOutcome(task, name, decision.label.name, NOT_ALLOWED, why=refused)
        started = time.perf_counter()
        result = service.complete(doc, CancelToken())
        latency = time.perf_counter() - started

        def outcome(status: str, answer: str = "", why: str = "") -> TaskOutcome:
            scored = None
            if status == SCORED:
                scored = score(answer, task.expected, task.prefix, task.suffix, task.language)
            return TaskOutcome(
                task,
                name,
                result.label,
                status,
                answer,
                scored,
                latency,
                result.tokens_in,
                result.tokens_out,
                result.destination,
                why,
            )

        # the result names the destination object (the on-box one keeps its own name
        # whatever the policy calls it)
        if result.destination != router.destinations[name].name:
            return outcome(
                FALLBACK, result.text, "; ".join(f"{d}: {c}" for d, c in result.fallbacks)
            )
        if result.outcome == "error":
            return outcome(ERROR, why=result.error or "")
        return outcome(SCORED, result.text)
