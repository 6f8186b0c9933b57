"""A route pinned to one destination, for measuring that destination (``onbox eval``).

:class:`PinnedRouter` is an ordinary :class:`~onbox.inference.routing.Router` over a copy
of the policy whose route for every label is the one pinned destination (the on-box model
stays the last resort). Nothing else changes: the router's own plan decides eligibility
(clearance per label, an expired policy sending everything on-box, the circuit breaker),
anything that leaves the machine goes through the egress gate — which decides the label
again and journals the egress first — and a refused or failing destination falls back
on-box, which the caller sees in the result and must not count as the pinned one's answer.

The gate insists that its labeller's policy *is* the router's policy (a swap in between
means "route again"), so the labeller is wrapped to present the pinned copy; decisions
still come from the real label authority, under its lock. Only the routes differ between
the copy and the policy in force, and routes do not affect labels.

:meth:`PinnedRouter.refusal` answers the question ``onbox eval`` asks before sending a
task at all: may this destination receive a document with this decision, and if not, why?
"""

from __future__ import annotations

import dataclasses
from typing import Any

from onbox.classification.decision import Decision
from onbox.classification.policy_model import Policy
from onbox.inference.gate import Labeller
from onbox.inference.health import CircuitBreaker
from onbox.inference.routing import Router


def pinned_policy(policy: Policy, name: str) -> Policy:
    """``policy`` with every label routed to ``name`` alone."""
    return dataclasses.replace(
        policy, routes={label.name: (name,) for label in policy.scale.labels()}
    )


class PinnedLabeller:
    """The label authority's decisions and lock, presenting the pinned policy copy."""

    def __init__(self, labeller: Labeller, policy: Policy) -> None:
        self._labeller = labeller
        self._policy = policy

    @property
    def lock(self) -> Any:
        """The real authority's lock."""
        return self._labeller.lock

    @property
    def policy(self) -> Policy:
        """The pinned copy of the policy in force."""
        return self._policy

    @property
    def generation(self) -> int:
        """The real authority's generation."""
        return self._labeller.generation

    def decide(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        """A fresh decision from the real authority."""
        return self._labeller.decide(uri, text, version, language)

    @property
    def tracking(self) -> bool:
        """Whether the real authority knows which documents are open."""
        return self._labeller.tracking

    def current(self, uri: str) -> tuple[str, int | None] | None:
        """The document as the editor holds it now, from the real authority."""
        return self._labeller.current(uri)


class PinnedRouter(Router):
    """Routes every label to ``pinned`` where the router's rules allow it, then on-box."""

    def __init__(self, base: Router, pinned: str, labeller: Labeller | None) -> None:
        if pinned not in base.destinations:
            raise KeyError(pinned)
        policy = pinned_policy(base.policy, pinned)
        super().__init__(
            policy,
            base.destinations,
            base.journal,
            breaker=CircuitBreaker(),
            labeller=PinnedLabeller(labeller, policy) if labeller is not None else None,
        )
        self.pinned = pinned

    def refusal(self, decision: Decision) -> str | None:
        """Why the pinned destination may not receive ``decision``'s document (None: it may)."""
        if self.pinned == self.on_box_name:
            return None
        steps = self.plan(decision)
        for step in steps:
            if step.destination == self.pinned:
                return None if step.eligible else step.why
        return steps[-1].why  # the plan skipped it entirely (an expired policy: on-box only)
