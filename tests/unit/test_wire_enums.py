"""The StrEnums carry exactly the strings the wire, the policy and the docs use.

Destination kinds, server states and completion outcomes are compared as enum members in
the code but travel as plain strings (journals, ``onbox/status``, policies); a member
added or renamed on one side only must fail here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from onbox.classification.policy_model import DESTINATION_KINDS
from onbox.inference.destination import DestinationKind
from onbox.server.pipeline import Outcome
from onbox.server.status import ServerState

ROOT = Path(__file__).resolve().parents[2]


def test_destination_kinds_are_the_kinds_a_policy_accepts() -> None:
    assert [k.value for k in DestinationKind] == list(DESTINATION_KINDS)


def test_server_states_are_protocol_ts_server_state() -> None:
    ts = (ROOT / "editors" / "vscode" / "src" / "protocol.ts").read_text("utf-8")
    union = re.search(r"export type ServerState = ([^;]+);", ts)
    assert union is not None, "protocol.ts no longer declares ServerState"
    assert [s.value for s in ServerState] == re.findall(r"'([^']+)'", union.group(1))


def test_outcomes_are_the_ones_docs_journal_md_lists() -> None:
    docs = (ROOT / "docs" / "journal.md").read_text("utf-8")
    listed = re.search(r"\*\*`outcome`\*\* \(([^)]*)\)", docs)
    assert listed is not None, "docs/journal.md no longer lists the completion outcomes"
    assert [o.value for o in Outcome] == re.findall(r"`([^`]+)`", listed.group(1))


def test_members_serialize_as_their_plain_strings() -> None:
    """Journals and LSP payloads carry the value, never the member's name."""
    body = {"kind": DestinationKind.LLAMA_CPP, "state": ServerState.READY, "o": Outcome.SERVED}
    assert json.dumps(body) == '{"kind": "llama-cpp", "state": "ready", "o": "served"}'
    assert f"{DestinationKind.OPENAI}" == "openai" and str(Outcome.EMPTY) == "empty"
