"""Builds the parts a running server needs and answers the server-wide requests.

Kept apart from :mod:`onbox.server.lsp` so that the handlers stay thin: the wiring owns
the classifier, the journal, the router and the policy service, and knows how to
describe each of them for ``onbox/health``, ``onbox/explain`` and ``onbox doctor``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from onbox import __version__, paths
from onbox.classification.decision import Decision
from onbox.inference.local import gpu_offload_supported, llama_build_info
from onbox.server.pipeline import CompletionService, FailClosedClassifier, reason_lines
from onbox.server.settings import Settings

if TYPE_CHECKING:
    from onbox.server.lsp import OnboxServer

logger = logging.getLogger(__name__)


class Wiring:
    """The server's collaborators, created from settings at ``initialize``."""

    def __init__(self, settings: Settings, server: OnboxServer | None = None) -> None:
        self.settings = settings
        self.server = server
        self.journal: Any = None
        self.journal_error: str | None = None
        self.service = CompletionService(settings, classifier=FailClosedClassifier())

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start background services (policy pulls)."""

    def stop(self) -> None:
        """Stop background services and close the journal."""

    # -- journal -----------------------------------------------------------------------

    def journal_event(self, kind: str, body: dict[str, Any]) -> bool:
        """Append a non-egress entry; False (and a visible error) if it cannot be written."""
        if self.journal is None:
            return False
        try:
            self.journal.append(kind, body)
            return True
        except Exception as exc:
            self.journal_error = str(exc)
            if self.server is not None:
                self.server.show_once(f"Onbox: the audit journal cannot be written: {exc}")
            return False

    def journal_summary(self) -> dict[str, Any]:
        """``journal`` part of ``onbox/status``."""
        return {"ok": self.journal is not None and self.journal_error is None, "error": self.journal_error}

    def journal_stats(self, days: int) -> dict[str, Any]:
        """``onbox/journalStats``."""
        return {"error": "the journal is not available"}

    def verify_journal(self) -> dict[str, Any]:
        """``onbox.verifyJournal``."""
        return {"ok": False, "entries": 0, "error": "the journal is not available"}

    # -- policy ------------------------------------------------------------------------

    def policy_summary(self) -> dict[str, Any]:
        """``policy`` part of ``onbox/status``."""
        return {"id": "builtin-fail-closed", "serial": 0, "expires": None, "expired": False}

    def policy_pull(self) -> dict[str, Any]:
        """``onbox/policyPull``."""
        return {"applied": False, "serial": 0, "message": "no policy sources are configured"}

    # -- explain / health --------------------------------------------------------------

    def explain(self, uri: str, decision: Decision) -> dict[str, Any]:
        """``onbox/explain``: decision, route and a human rendering."""
        dest = self.service.destination_for(decision)
        route: list[dict[str, Any]] = [
            {"destination": dest.name, "kind": dest.kind, "clearance": dest.clearance,
             "eligible": True, "healthy": True, "why": "the on-box model is always allowed"}
        ]
        lines = [f"{decision.label.name} → {dest.name}", "", "Why this label:"]
        lines += [f"  • {line}" for line in reason_lines(decision)]
        lines += ["", "Route:"]
        lines += [f"  • {r['destination']} ({r['kind']}, clearance {r['clearance']}): {r['why']}" for r in route]
        data = decision.to_json()
        return {
            "uri": uri,
            "label": decision.label.name,
            "reasons": data["reasons"],
            "findings": data["findings"],
            "policy": data["policy"],
            "destination": dest.name,
            "route": route,
            "text": "\n".join(lines),
        }

    def health(self, model_state: str, model_error: str | None) -> dict[str, Any]:
        """``onbox/health``."""
        local = self.service.local
        return {
            "version": __version__,
            "model": {
                "path": str(local.model_path) if local.model_path else self.settings.model.path,
                "name": local.model_name,
                "loaded": local.loaded,
                "state": model_state,
                "error": model_error,
                "sha256": local.model_sha256,
            },
            "gpuOffload": gpu_offload_supported(),
            "generation": {
                "generationsStarted": local.generations_started,
                "lastFinish": local.last_finish,
                "lastTokensOut": local.last_tokens_out,
                "lastPromptTokensEvaluated": local.last_prompt_tokens_evaluated,
            },
            "llamaCpp": llama_build_info(),
            "policy": self.policy_summary(),
            "journal": {"dir": str(paths.journal_dir()), "writable": self.journal is not None, "error": self.journal_error},
            "trustRoot": {"path": str(paths.trust_root_path()), "present": paths.trust_root_path().exists()},
        }
