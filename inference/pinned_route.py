"""A route pinned to one destination, for measuring that destination (``onbox eval``).

:class:`PinnedRouter` is a :class:`~onbox.inference.routing.Router` whose route for every
label is the one pinned destination, then the on-box model as the last resort. Every
other rule is the router's own: clearance is checked per label, anything that leaves the
machine goes through the egress gate (which decides the label again and journals the
egress first), and a refused or failing destination falls back on-box — which the caller
sees in the result's destination and fallbacks, and must not count as the pinned one's
answer.

:meth:`PinnedRouter.allows` answers the question ``onbox eval`` asks before sending a
task at all: may this destination receive a document with this decision?
"""

from __future__ import annotations

from onbox.classification.decision import Decision
from onbox.inference.gate import Labeller
from onbox.inference.health import CircuitBreaker
from onbox.inference.routing import Router, RouteStep


class PinnedRouter(Router):
    """Routes every label to ``pinned`` (if its clearance allows), then on-box."""

    def __init__(self, base: Router, pinned: str, labeller: Labeller | None) -> None:
        if pinned not in base.destinations:
            raise KeyError(pinned)
        super().__init__(
            base.policy,
            base.destinations,
            base.journal,
            breaker=CircuitBreaker(),
            labeller=labeller,
        )
        self.pinned = pinned

    def allows(self, decision: Decision) -> bool:
        """Whether the pinned destination's clearance is at least ``decision``'s label."""
        return self.pinned == self.on_box_name or self.clearance_of(self.pinned) >= self.label_of(
            decision
        )

    def plan(self, decision: Decision) -> list[RouteStep]:
        """The pinned destination (when it is not on-box), then the on-box model."""
        dest = self.destinations[self.on_box_name]
        on_box = RouteStep(
            self.on_box_name,
            dest.kind,
            self.clearance_of(self.on_box_name).name,
            True,
            True,
            "on-box: the last resort",
        )
        if self.pinned == self.on_box_name:
            return [on_box]
        label = self.label_of(decision)
        clearance = self.clearance_of(self.pinned)
        eligible = clearance >= label
        healthy = self.breaker.healthy(self.pinned)
        if not eligible:
            why = f"clearance {clearance.name} < {label.name}"
        elif not healthy:
            why = f"failing; retry in {self.breaker.retry_in(self.pinned):.0f}s"
        else:
            why = f"clearance {clearance.name} >= {label.name} (pinned for evaluation)"
        kind = self.destinations[self.pinned].kind
        return [RouteStep(self.pinned, kind, clearance.name, eligible, healthy, why), on_box]
