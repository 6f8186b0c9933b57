"""The ``onbox/status`` notification, built from plain values (no server needed).

The handler in :mod:`onbox.server.lsp` gathers the inputs — the model's state, the
policy and journal summaries, a document's decision and where it would be served — and
this module shapes the payload documented in docs/protocol.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from onbox.classification.decision import Decision

#: The ``onbox/status`` notification (server → client).
STATUS = "onbox/status"


class ServerState(StrEnum):
    """The ``state`` of ``onbox/status`` and ``onbox/health`` (``ServerState`` in protocol.ts)."""

    LOADING = "loading"
    READY = "ready"
    GENERATING = "generating"
    ERROR = "error"
    DISABLED = "disabled"


def reason_texts(decision: Decision) -> list[str]:
    """The decision's reasons as the status item lists them: ``signal: message (source)``."""
    return [
        f"{r.signal}: {r.message}" + (f" ({r.source})" if r.source else "")
        for r in decision.reasons
    ]


def status_payload(
    uri: str | None,
    *,
    state: str,
    message: str,
    model: str,
    policy: dict[str, Any] | None = None,
    journal: dict[str, Any] | None = None,
    decision: Decision | None = None,
    destination: str | None = None,
    destination_kind: str | None = None,
) -> dict[str, Any]:
    """The payload for one document, or for the server when ``uri`` is None."""
    payload: dict[str, Any] = {"uri": uri, "state": state, "message": message, "model": model}
    if policy is not None:
        payload["policy"] = policy
    if journal is not None:
        payload["journal"] = journal
    if decision is not None:
        payload.update(
            {
                "label": decision.label.name,
                "destination": destination,
                "destinationKind": destination_kind,
                "reasons": reason_texts(decision),
            }
        )
    return payload


def label_change(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any] | None:
    """The ``label-changed`` journal body when the label shown changes (None: it did not)."""
    before, after = previous.get("label"), current.get("label")
    if before is None or before == after:
        return None
    return {"uri": current.get("uri"), "from": before, "to": after}
