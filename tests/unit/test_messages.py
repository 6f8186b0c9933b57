"""Onbox's attrs message classes: the names protocol.ts reads, and what pygls makes of them.

The field names are checked against ``editors/vscode/src/protocol.ts`` (its interfaces
parsed with a regular expression), so a field renamed on one side only fails here. The
JSON shapes are checked through pygls's own converter, the one that puts them on the wire.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from lsprotocol import types

from onbox.classification.decision import Decision, Finding, Reason
from onbox.classification.labels import Label
from onbox.server import messages
from onbox.server.lsp import server
from onbox.server.messages import (
    AcceptResult,
    ExplainParams,
    ExplainRequest,
    ExplainResult,
    JournalStatsParams,
    JournalStatsRequest,
    PolicyPullResult,
    RouteStep,
    VerifyJournalResult,
    to_json,
)
from onbox.server.protocol import AnsweredMalformedRequest

PROTOCOL_TS = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "src" / "protocol.ts"

#: Python class -> the protocol.ts interface it mirrors.
MIRRORS: dict[type, str] = {
    messages.ExplainResult: "ExplainResult",
    messages.ExplainReason: "ExplainReason",
    messages.ExplainFinding: "ExplainFinding",
    messages.RouteStep: "RouteStep",
    messages.DecisionPolicy: "PolicyState",
    messages.PolicyPullResult: "PolicyPullResult",
    messages.VerifyJournalResult: "VerifyJournalResult",
}

#: Known, intended differences; anything else that differs fails the test.
SENT_BUT_NOT_READ = {"ExplainFinding": {"start", "end", "detector"}}  # the extension shows lines
READ_BUT_NOT_SENT = {"PolicyState": {"expires", "expired"}}  # explain's policy has no expiry


def ts_interfaces() -> dict[str, set[str]]:
    """Each ``export interface`` in protocol.ts with its top-level field names."""
    text = PROTOCOL_TS.read_text("utf-8")
    found = {}
    for match in re.finditer(r"^export interface (\w+)[^{]*\{\n(.*?)^\}", text, re.M | re.S):
        found[match.group(1)] = set(re.findall(r"^  (\w+)\??:", match.group(2), re.M))
    return found


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda c: c.__name__)
def test_field_names_match_protocol_ts(cls: type) -> None:
    interface = MIRRORS[cls]
    ts = ts_interfaces()
    assert interface in ts, f"protocol.ts has no interface {interface}"
    python = {camel(f.name) for f in attrs.fields(cls)}
    assert python - ts[interface] == SENT_BUT_NOT_READ.get(interface, set())
    assert ts[interface] - python == READ_BUT_NOT_SENT.get(interface, set())


def test_the_ts_parser_sees_the_interfaces() -> None:
    """Guards the regex: a parser that found nothing would make every check above pass."""
    ts = ts_interfaces()
    assert ts["VerifyJournalResult"] == {"ok", "entries", "error"}
    assert {"uri", "label", "route", "text"} <= ts["ExplainResult"]


def label(name: str, rank: int) -> Label:
    return Label(rank, name)


def test_explain_result_json_is_the_decisions_json() -> None:
    """The typed result carries what ``Decision.to_json`` always sent, in camelCase."""
    restricted = label("restricted", 2)
    decision = Decision(
        restricted,
        (Reason("content", restricted, "an AWS key", "app.py:3"),),
        "acme",
        policy_serial=4,
        findings=(Finding("secret", "aws-access-key", 10, 30, restricted, "regex", 3),),
    )
    route = [RouteStep("on-box", "llama-cpp", "restricted", True, True, "on-box")]
    data = to_json(ExplainResult.of("file:///app.py", decision, "on-box", route, "restricted"))
    expected = decision.to_json()
    assert list(data) == [
        "uri",
        "label",
        "reasons",
        "findings",
        "policy",
        "destination",
        "route",
        "text",
    ]
    assert data["reasons"] == expected["reasons"]
    assert data["findings"] == expected["findings"]
    assert data["policy"] == expected["policy"] == {"id": "acme", "serial": 4}
    assert data["route"] == [
        {
            "destination": "on-box",
            "kind": "llama-cpp",
            "clearance": "restricted",
            "eligible": True,
            "healthy": True,
            "why": "on-box",
        }
    ]


def test_results_keep_null_fields_and_accept_keeps_its_two_shapes() -> None:
    """Fields without a default are always sent (``null`` included); accept's are as before."""
    assert to_json(VerifyJournalResult(ok=True, entries=3, error=None)) == {
        "ok": True,
        "entries": 3,
        "error": None,
    }
    assert to_json(PolicyPullResult(applied=False, serial=None, message="m")) == {
        "applied": False,
        "serial": None,
        "message": "m",
    }
    assert to_json(AcceptResult(recorded=True, completion_id="c1", how="line")) == {
        "recorded": True,
        "completionId": "c1",
        "how": "line",
    }
    assert to_json(AcceptResult(recorded=False, reason="unknown completion id 'x'")) == {
        "recorded": False,
        "reason": "unknown completion id 'x'",
    }


def structure(method: str, params: Any) -> Any:
    """What the server's protocol makes of a request, as it does for a real message."""
    return server.protocol.structure_message(
        {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    )


def test_onbox_requests_arrive_typed() -> None:
    explain = structure("onbox/explain", {"uri": "file:///a.py"})
    assert isinstance(explain, ExplainRequest) and explain.params == ExplainParams("file:///a.py")
    stats = structure("onbox/journalStats", {"days": 30})
    assert isinstance(stats, JournalStatsRequest) and stats.params is not None
    assert stats.params.window == 30
    assert JournalStatsParams().window == 7  # days left out
    # lsprotocol's own methods are untouched.
    hover = structure(
        types.TEXT_DOCUMENT_HOVER,
        {"textDocument": {"uri": "file:///a.py"}, "position": {"line": 0, "character": 0}},
    )
    assert isinstance(hover, types.HoverRequest)


@pytest.mark.parametrize(
    ("method", "params", "problem"),
    [
        ("onbox/explain", {}, "required field missing @ $.params.uri"),
        ("onbox/explain", [1, 2], "expected str @ $.params.uri"),
        ("onbox/journalStats", {"days": "many"}, "days must be a positive number, not 'many'"),
        ("onbox/journalStats", {"days": True}, "days must be a positive number, not True"),
        ("onbox/journalStats", {"days": -1}, "days must be a positive number, not -1"),
    ],
)
def test_bad_params_are_refused_naming_the_field(method: str, params: Any, problem: str) -> None:
    """A malformed request never reaches its handler; the error says what was wrong."""
    with pytest.raises(AnsweredMalformedRequest, match=re.escape(problem)):
        structure(method, params)
