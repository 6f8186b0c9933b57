"""Onbox's own LSP requests and commands (see docs/protocol.md).

``onbox/explain``, ``onbox/health``, ``onbox/journalStats``, ``onbox/policyPull`` and the
``onbox.*`` commands, including ``onbox.accept``, which journals an accepted suggestion.
Params and results are the attrs classes of :mod:`onbox.server.messages`: pygls
structures (and so validates) the params before a handler runs.
:func:`register` adds them to the server (:mod:`onbox.server.lsp` calls it once). pygls
reads each command handler's annotations, so :class:`OnboxServer` is imported for real.

Journal scans, journal verification and policy pulls can take seconds (a large journal,
a slow git remote), so they run on the server's I/O threads (:meth:`OnboxServer.off_loop`):
while they run, completions and cancels are still served.
"""

from __future__ import annotations

from typing import Any

from onbox.server.language_server import OnboxServer
from onbox.server.lsp_items import ACCEPT
from onbox.server.messages import (
    DEFAULT_STATS_DAYS,
    EXPLAIN,
    HEALTH,
    JOURNAL_STATS,
    POLICY_PULL,
    AcceptArguments,
    AcceptResult,
    ExplainParams,
    ExplainResult,
    JournalStatsParams,
    PolicyPullResult,
    VerifyJournalResult,
)


def explain_uri(ls: OnboxServer, uri: str) -> ExplainResult:
    """The decision and route for a document, with a human rendering."""
    if uri in ls.workspace.text_documents:
        decision = ls.decide(uri)
    else:
        decision = ls.service.classify(uri, None, None)
    assert ls.wiring is not None
    return ls.wiring.explain(uri, decision)


def explain(ls: OnboxServer, params: ExplainParams) -> ExplainResult:
    """``onbox/explain``: why this label and route."""
    return explain_uri(ls, params.uri)


def health(ls: OnboxServer, params: Any) -> dict[str, Any]:
    """``onbox/health``: what ``:checkhealth onbox`` and the VS Code status item show."""
    assert ls.wiring is not None
    return ls.wiring.health(ls.model_state, ls.model_error)


async def journal_stats(ls: OnboxServer, params: JournalStatsParams | None) -> dict[str, Any]:
    """``onbox/journalStats``: a scan of the journal, off the event loop."""
    assert ls.wiring is not None
    wiring = ls.wiring
    days = (params or JournalStatsParams()).window
    return await ls.off_loop(lambda: wiring.journal_stats(days))


async def policy_pull(ls: OnboxServer, params: Any) -> PolicyPullResult:
    """``onbox/policyPull``: fetch and apply policy now, off the event loop."""
    assert ls.wiring is not None
    return await ls.off_loop(ls.wiring.policy_pull)


def accept(ls: OnboxServer, arguments: AcceptArguments) -> AcceptResult:
    """Journal that the user accepted a suggestion (whole, a line or a word)."""
    cid = arguments.completion_id
    result = ls.completions.get(cid)
    if result is None:
        return AcceptResult(recorded=False, reason=f"unknown completion id {cid!r}")
    assert ls.wiring is not None
    recorded = ls.wiring.journal_event(
        "acceptance",
        {
            "completionId": cid,
            "uri": arguments.uri,
            "how": arguments.how,
            "label": result.label,
            "destination": result.destination,
        },
    )
    return AcceptResult(recorded=recorded, completion_id=cid, how=arguments.how)


def explain_command(ls: OnboxServer, uri: str = "") -> ExplainResult:
    """Same as ``onbox/explain``."""
    return explain_uri(ls, uri)


async def journal_stats_command(ls: OnboxServer, *args: Any) -> dict[str, Any]:
    """Same as ``onbox/journalStats`` for the last 7 days."""
    assert ls.wiring is not None
    wiring = ls.wiring
    return await ls.off_loop(lambda: wiring.journal_stats(DEFAULT_STATS_DAYS))


async def verify_journal_command(ls: OnboxServer, *args: Any) -> VerifyJournalResult:
    """Verify the local journal (every hash and signature), off the event loop."""
    assert ls.wiring is not None
    return await ls.off_loop(ls.wiring.verify_journal)


async def policy_pull_command(ls: OnboxServer, *args: Any) -> PolicyPullResult:
    """Same as ``onbox/policyPull``."""
    assert ls.wiring is not None
    return await ls.off_loop(ls.wiring.policy_pull)


def register(server: OnboxServer) -> None:
    """Add Onbox's own requests and commands to ``server``."""
    server.feature(EXPLAIN)(explain)
    server.feature(HEALTH)(health)
    server.feature(JOURNAL_STATS)(journal_stats)
    server.feature(POLICY_PULL)(policy_pull)
    server.command(ACCEPT)(accept)
    server.command("onbox.explain")(explain_command)
    server.command("onbox.journalStats")(journal_stats_command)
    server.command("onbox.verifyJournal")(verify_journal_command)
    server.command("onbox.policyPull")(policy_pull_command)
