"""Onbox's own LSP requests and commands (see docs/protocol.md).

``onbox/explain``, ``onbox/health``, ``onbox/journalStats``, ``onbox/policyPull`` and the
``onbox.*`` commands, including ``onbox.accept``, which journals an accepted suggestion.
:func:`register` adds them to the server (:mod:`onbox.server.lsp` calls it once). pygls
reads each command handler's annotations, so :class:`OnboxServer` is imported for real.

Journal scans, journal verification and policy pulls can take seconds (a large journal,
a slow git remote), so they run on the server's I/O threads (:meth:`OnboxServer.off_loop`):
while they run, completions and cancels are still served.
"""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from onbox.server.language_server import OnboxServer
from onbox.server.lsp_items import ACCEPT

EXPLAIN = "onbox/explain"
HEALTH = "onbox/health"
JOURNAL_STATS = "onbox/journalStats"
POLICY_PULL = "onbox/policyPull"


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def explain_uri(ls: OnboxServer, uri: str) -> dict[str, Any]:
    """The decision and route for a document, with a human rendering."""
    if uri in ls.workspace.text_documents:
        decision = ls.decide(uri)
    else:
        decision = ls.service.classify(uri, None, None)
    assert ls.wiring is not None
    return ls.wiring.explain(uri, decision)


def explain(ls: OnboxServer, params: Any) -> dict[str, Any]:
    """``onbox/explain``: why this label and route."""
    return explain_uri(ls, str(_get(params, "uri", "")))


def health(ls: OnboxServer, params: Any) -> dict[str, Any]:
    """``onbox/health``: what ``:checkhealth onbox`` and the VS Code status item show."""
    assert ls.wiring is not None
    return ls.wiring.health(ls.model_state, ls.model_error)


async def journal_stats(ls: OnboxServer, params: Any) -> dict[str, Any]:
    """``onbox/journalStats``: a scan of the journal, off the event loop."""
    assert ls.wiring is not None
    wiring = ls.wiring
    days = _get(params, "days", 7)
    if days is None:
        days = 7
    if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
        raise JsonRpcInvalidParams(
            f"onbox/journalStats: days must be a positive number, not {days!r}"
        )
    return await ls.off_loop(lambda: wiring.journal_stats(int(days)))


async def policy_pull(ls: OnboxServer, params: Any) -> dict[str, Any]:
    """``onbox/policyPull``: fetch and apply policy now, off the event loop."""
    assert ls.wiring is not None
    return await ls.off_loop(ls.wiring.policy_pull)


def accept(ls: OnboxServer, *args: Any) -> dict[str, Any]:
    """Journal that the user accepted a suggestion (whole, a line or a word)."""
    arg = args[0] if args else {}
    cid = str(_get(arg, "completionId", ""))
    how = str(_get(arg, "how", "whole"))
    result = ls.completions.get(cid)
    if result is None:
        return {"recorded": False, "reason": f"unknown completion id {cid!r}"}
    assert ls.wiring is not None
    recorded = ls.wiring.journal_event(
        "acceptance",
        {
            "completionId": cid,
            "uri": _get(arg, "uri"),
            "how": how,
            "label": result.label,
            "destination": result.destination,
        },
    )
    return {"recorded": recorded, "completionId": cid, "how": how}


def explain_command(ls: OnboxServer, *args: Any) -> dict[str, Any]:
    """Same as ``onbox/explain``."""
    return explain_uri(ls, str(args[0]) if args else "")


async def journal_stats_command(ls: OnboxServer, *args: Any) -> dict[str, Any]:
    """Same as ``onbox/journalStats`` for the last 7 days."""
    assert ls.wiring is not None
    wiring = ls.wiring
    return await ls.off_loop(lambda: wiring.journal_stats(7))


async def verify_journal_command(ls: OnboxServer, *args: Any) -> dict[str, Any]:
    """Verify the local journal (every hash and signature), off the event loop."""
    assert ls.wiring is not None
    return await ls.off_loop(ls.wiring.verify_journal)


async def policy_pull_command(ls: OnboxServer, *args: Any) -> dict[str, Any]:
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
