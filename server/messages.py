"""Onbox's own LSP messages as attrs classes, mirroring ``editors/vscode/src/protocol.ts``.

pygls structures them with its lsprotocol converter, as it does lsprotocol's own types:
Python names are snake_case and travel camelCase (``completion_id`` ↔ ``completionId``),
and a field whose value equals its default is left out of the JSON. Result classes give
a field a default only where the server has always left it out (``onbox.accept``'s
``reason``); every other field is always sent, ``null`` included.

Requests arrive typed through :data:`REQUEST_TYPES`, which
:meth:`onbox.server.protocol.OnboxProtocol.get_message_type` consults, so a malformed
``onbox/explain`` is answered ``InvalidParams`` naming the bad field before any handler
runs. Command arguments are structured by pygls from the handler's annotations
(``def accept(ls, arguments: AcceptArguments)``).

``onbox/health`` and ``onbox/journalStats`` answer open-ended diagnostics (see
docs/protocol.md) and stay plain mappings; ``onbox/status`` is built by
:mod:`onbox.server.status`.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from lsprotocol.converters import get_converter

from onbox.classification.decision import Decision, Finding, Reason
from onbox.inference.routing import RouteStep as RoutePlanStep

EXPLAIN = "onbox/explain"
HEALTH = "onbox/health"
JOURNAL_STATS = "onbox/journalStats"
POLICY_PULL = "onbox/policyPull"

#: lsprotocol's converter, as pygls uses it, for renderings outside LSP (``onbox explain --json``).
_CONVERTER = get_converter()

#: ``onbox/journalStats`` counts this many days when ``days`` is left out.
DEFAULT_STATS_DAYS = 7


# -- params ---------------------------------------------------------------------------


@attrs.define
class ExplainParams:
    """Params of ``onbox/explain``: the document to explain."""

    uri: str


def _positive_days(instance: Any, attribute: Any, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"days must be a positive number, not {value!r}")


@attrs.define
class JournalStatsParams:
    """Params of ``onbox/journalStats``: how many days back to count (default 7)."""

    # Typed loosely on purpose: the converter would turn true or "7" into a number; the
    # validator refuses anything but a positive JSON number, naming the value.
    days: Any = attrs.field(default=None, validator=_positive_days)

    @property
    def window(self) -> int:
        """The number of whole days to count."""
        return DEFAULT_STATS_DAYS if self.days is None else int(self.days)


@attrs.define
class AcceptArguments:
    """The argument of the ``onbox.accept`` command that completion items carry."""

    completion_id: str
    uri: str | None = None
    how: str = "whole"  # "whole" | "line" | "word"


@attrs.define
class ExplainRequest:
    """The ``onbox/explain`` request message."""

    id: int | str
    params: ExplainParams
    method: Literal["onbox/explain"] = "onbox/explain"
    jsonrpc: str = "2.0"


@attrs.define
class JournalStatsRequest:
    """The ``onbox/journalStats`` request message (``params`` may be left out)."""

    id: int | str
    params: JournalStatsParams | None = None
    method: Literal["onbox/journalStats"] = "onbox/journalStats"
    jsonrpc: str = "2.0"


#: Request messages pygls structures into the classes above.
REQUEST_TYPES: dict[str, type] = {EXPLAIN: ExplainRequest, JOURNAL_STATS: JournalStatsRequest}


# -- results --------------------------------------------------------------------------


@attrs.define
class ExplainReason:
    """One signal behind a label (``ExplainReason`` in protocol.ts)."""

    signal: str
    label: str
    message: str
    source: str | None

    @classmethod
    def of(cls, reason: Reason) -> ExplainReason:
        """From the classifier's reason."""
        return cls(reason.signal, reason.label.name, reason.message, reason.source)


@attrs.define
class ExplainFinding:
    """A sensitive span, without its value (``ExplainFinding`` in protocol.ts)."""

    kind: str
    type: str
    start: int
    end: int
    line: int
    label: str
    detector: str

    @classmethod
    def of(cls, finding: Finding) -> ExplainFinding:
        """From the content scanner's finding."""
        return cls(
            finding.kind,
            finding.type,
            finding.start,
            finding.end,
            finding.line,
            finding.label.name,
            finding.detector,
        )


@attrs.define
class DecisionPolicy:
    """The policy a decision was taken under (``PolicyState`` in protocol.ts, in part)."""

    id: str
    serial: int


@attrs.define
class RouteStep:
    """One destination on the label's route, and why it is or is not used."""

    destination: str
    kind: str
    clearance: str
    eligible: bool
    healthy: bool
    why: str

    @classmethod
    def of(cls, step: RoutePlanStep) -> RouteStep:
        """From the router's plan."""
        return cls(
            step.destination, step.kind, step.clearance, step.eligible, step.healthy, step.why
        )


@attrs.define
class ExplainResult:
    """Result of ``onbox/explain`` (and of the ``onbox.explain`` command)."""

    uri: str
    label: str
    reasons: list[ExplainReason]
    findings: list[ExplainFinding]
    policy: DecisionPolicy
    destination: str
    route: list[RouteStep]
    text: str

    @classmethod
    def of(
        cls, uri: str, decision: Decision, destination: str, route: list[RouteStep], text: str
    ) -> ExplainResult:
        """The result for ``decision``'s document, served from ``destination``."""
        return cls(
            uri=uri,
            label=decision.label.name,
            reasons=[ExplainReason.of(r) for r in decision.reasons],
            findings=[ExplainFinding.of(f) for f in decision.findings],
            policy=DecisionPolicy(decision.policy_id, decision.policy_serial),
            destination=destination,
            route=route,
            text=text,
        )


@attrs.define
class PolicyPullResult:
    """Result of ``onbox/policyPull`` and the ``onbox.policyPull`` command."""

    applied: bool
    serial: int | None
    message: str


@attrs.define
class VerifyJournalResult:
    """Result of the ``onbox.verifyJournal`` command."""

    ok: bool
    entries: int
    error: str | None


@attrs.define
class AcceptResult:
    """Result of ``onbox.accept``: recorded (with the id and how), or why not."""

    recorded: bool
    completion_id: str | None = None
    how: str | None = None
    reason: str | None = None


def to_json(message: Any) -> Any:
    """``message`` as it travels over LSP (camelCase, defaults left out), for CLI ``--json``."""
    return _CONVERTER.unstructure(message)
