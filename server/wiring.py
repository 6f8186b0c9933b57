"""Builds the parts a running server needs and answers the server-wide requests.

Kept apart from :mod:`onbox.server.lsp` so that the handlers stay thin: the wiring owns
the policy (signed store or, on unmanaged machines, a local file), the classifier, the
journal, the router and the policy service, and knows how to describe each of them for
``onbox/health``, ``onbox/explain``, ``onbox/status`` and ``onbox doctor``.

Which policy applies:

1. A trust root is installed (a managed workstation): only signed bundles from the
   policy store apply; ``onbox.policy.path`` is ignored, with a warning, because a local
   file must not be able to weaken the admin's policy.
2. No trust root: ``onbox.policy.path`` if set (evaluation and tests), else the
   built-in fail-closed policy (everything restricted, on-box only).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onbox import __version__, paths
from onbox.classification.authority import LabelAuthority
from onbox.classification.classifier import Classifier
from onbox.classification.decision import Decision
from onbox.classification.policy import builtin_policy, load_policy
from onbox.classification.policy_model import Policy, PolicyError
from onbox.classification.policy_store import PolicyStore, describe_policy_state
from onbox.classification.sources import parse_source
from onbox.inference.destination import Destination, DestinationKind
from onbox.inference.local import ModelSettings
from onbox.inference.remote import build_destinations
from onbox.inference.routing import Router
from onbox.inference.worker_client import WorkerDestination
from onbox.server.identity import ActorContext, ActorJournal
from onbox.server.journal_location import journal_location
from onbox.server.messages import ExplainResult, PolicyPullResult, RouteStep, VerifyJournalResult
from onbox.server.pipeline import CompletionService, model_settings, reason_lines
from onbox.server.settings import Settings
from onbox.server.status import ServerState

logger = logging.getLogger(__name__)

Notify = Callable[[str], None]


class Wiring:
    """The server's collaborators, created from settings at ``initialize``."""

    def __init__(
        self,
        settings: Settings,
        *,
        notify_error: Notify | None = None,
        on_policy_change: Callable[[], None] | None = None,
        open_journal: bool = True,
    ) -> None:
        self.settings = settings
        self.notify_error: Notify = notify_error or (lambda msg: logger.warning("%s", msg))
        self.on_policy_change = on_policy_change
        self.journal: Any = None
        self.journal_error: str | None = None
        self.actors = ActorContext()
        # Before the journal: on a managed workstation the signed policy says where it lives.
        self.store = PolicyStore()
        self.journal_location = journal_location(settings.journal.dir, self.store)
        if open_journal:
            self._open_journal()
        self.store.journal = self.journal
        self.policy_warning: str | None = None
        self.policy = self._initial_policy()
        self.local = WorkerDestination(
            worker_model_settings(settings),
            clearance=self.policy.scale.highest.name,
            on_crash=self.model_crashed,
        )
        self.classifier = Classifier(self.policy)
        #: Every label the egress gate relies on comes from here, under its lock.
        self.labels = LabelAuthority(self.classifier)
        self.router = self._build_router(self.policy)
        self.service = CompletionService(
            settings,
            local=self.local,
            classifier=self.classifier,
            journal=self.journal,
            router=self.router,
            actors=self.actors,
            labels=self.labels,
        )
        self.policy_service: Any = None
        self.shipper: Any = None
        self._started = False

    # -- construction ------------------------------------------------------------------

    def _open_journal(self) -> None:
        from onbox.audit import JournalError, open_journal

        location = self.journal_location
        if location.note:
            logger.warning("%s", location.note)
        if location.directory is None:
            self.journal_error = str(location.error)
            self.notify_error(f"Onbox: the audit journal cannot be opened: {location.error}")
            return
        try:
            self.journal = ActorJournal(open_journal(location.directory), self.actors.actor)
        except (JournalError, OSError) as exc:
            self.journal_error = f"{exc}"
            self.notify_error(
                f"Onbox: the audit journal cannot be opened ({exc}); nothing will leave this machine "
                "until it can be written"
            )

    def _initial_policy(self) -> Policy:
        trust_root = self.store.trust_root_path
        if trust_root.exists():
            if self.settings.policy.path:
                self.notify_error(
                    f"Onbox: onbox.policy.path is ignored on a managed workstation (trust root at {trust_root}); "
                    "only signed policy bundles apply"
                )
            self.policy_warning = self.store.warning()
            return self.store.current()
        if self.settings.policy.path:
            try:
                return load_policy(Path(self.settings.policy.path).expanduser())
            except PolicyError as exc:
                self.policy_warning = str(exc)
                self.notify_error(
                    f"Onbox: policy not loaded, everything stays restricted and on-box: {exc}"
                )
            except OSError as exc:
                self.policy_warning = f"cannot read {self.settings.policy.path}: {exc.strerror}"
                self.notify_error(
                    f"Onbox: {self.policy_warning}; everything stays restricted and on-box"
                )
        return builtin_policy()

    def _build_router(self, policy: Policy, previous: Router | None = None) -> Router:
        destinations = build_destinations(policy, self.local)
        if not any(d.kind == DestinationKind.LLAMA_CPP for d in destinations.values()):
            destinations[self.local.name] = self.local
        return Router(
            policy,
            destinations,
            self.journal,
            breaker=previous.breaker if previous else None,
            labeller=self.labels,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Journal the start and begin pulling signed policy from the configured sources."""
        self._started = True
        self.journal_event(
            "server-start", {"version": __version__, "policy": self.policy_summary()}
        )
        self._start_shipping()
        if not self.store.trust_root_path.exists() and not self.settings.policy.sources:
            return
        from onbox.server.policy_service import PolicyService

        try:
            sources = [parse_source(s) for s in self.settings.policy.sources]
        except Exception as exc:
            self.notify_error(f"Onbox: bad onbox.policy.sources entry: {exc}")
            sources = []
        self.policy_service = PolicyService(
            self.store,
            sources,
            max(self.settings.policy.pull_minutes, 0.1) * 60,
            on_change=self.apply_policy,
            on_error=lambda msg: self.notify_error(f"Onbox policy: {msg}"),
        )
        self.policy_service.start()

    def stop(self) -> None:
        """Stop background services, journal the stop and close the journal."""
        if self.shipper is not None:
            self.shipper.stop()
            self.shipper = None
        if self.policy_service is not None:
            self.policy_service.stop()
            self.policy_service = None
        if self.journal is not None:
            if self._started:
                self.journal_event("server-stop", {"version": __version__})
            try:
                self.journal.close()
            except Exception:
                logger.exception("closing the journal failed")
            self.journal = None

    def _start_shipping(self) -> None:
        """Ship the journal to the collector the signed policy names (none: nothing runs)."""
        if self.journal is None:
            return
        from onbox.audit.ship import Shipper

        self.shipper = Shipper(
            self.journal,
            lambda: (
                self.policy.collector_url,
                self.policy.ship_minutes,
                self.policy.collector_ca,
            ),
            paths.data_dir() / "ship-state.json",
        )
        self.shipper.start()

    def apply_policy(self, policy: Policy) -> None:
        """Swap in a new policy: re-label with it and rebuild the routes (keeping health)."""
        # Under the label lock: no egress decision is in flight while labels and routes
        # change, and none that started under the old policy can send after it.
        router = self._build_router(policy, self.router)
        with self.labels.swap(policy):
            self.policy = policy
            self.policy_warning = self.store.warning()
            self.router = router
            self.service.router = router
        moved = journal_location(self.settings.journal.dir, self.store)
        if moved.directory != self.journal_location.directory:
            # An open journal never moves under a running server: the next start opens it.
            logger.warning(
                "the signed policy moves the journal to %s; onbox serve keeps writing %s "
                "until it restarts",
                moved.directory or moved.error,
                self.journal_location.directory,
            )
        if self.on_policy_change is not None:
            self.on_policy_change()

    def model_crashed(self, report: dict[str, Any]) -> None:
        """The model worker crashed or hung: journal it and tell the editor once."""
        self.journal_event("model-crashed", {k: v for k, v in report.items() if k != "message"})
        self.notify_error(str(report["message"]))

    def model_unavailable(self) -> str | None:
        """Why the on-box model is out of service after repeated crashes (None: it is not)."""
        local = self.local
        return local.error if local.crashes and local.error else None

    # -- journal -----------------------------------------------------------------------

    def journal_event(self, kind: str, body: dict[str, Any]) -> bool:
        """Append a non-egress entry; False (and a visible error) if it cannot be written."""
        if self.journal is None:
            return False
        try:
            self.journal.append(kind, body)
            self.journal_error = None
            return True
        except Exception as exc:
            self.journal_error = str(exc)
            self.notify_error(f"Onbox: the audit journal cannot be written: {exc}")
            return False

    def note_route(self, fallbacks: Sequence[tuple[str, str]], egress_seq: int | None) -> None:
        """After a completion: an egress refused for want of a journal entry must be seen.

        The router already served such a request on-box; this shows the editor why,
        once, and marks the journal as failing in ``onbox/status`` until an egress is
        journalled again. (A journal that never opened was reported at start.)
        """
        refused = [name for name, cause in fallbacks if cause == "journal"]
        if refused and self.journal is not None:
            self.journal_error = (
                f"cannot append to the audit journal at {self._journal_dir()};"
                f" nothing was sent to {', '.join(refused)}"
            )
            self.notify_error(
                f"Onbox: the audit journal cannot be written, so nothing was sent to"
                f" {', '.join(refused)} and completions stay on this machine until it can."
                f" Free disk space or fix onbox.journal.dir ({self._journal_dir()})."
            )
        elif egress_seq is not None:
            self.journal_error = None

    def destination_for(self, decision: Decision) -> Destination:
        """Where ``decision``'s document is served now, for ``onbox/status``.

        While the journal cannot be written nothing may leave, so the status says on-box
        rather than the remote destination the route would otherwise start with.
        """
        dest: Destination = self.service.destination_for(decision)
        on_box = self.router.on_box_name
        if dest.name != on_box and (self.journal is None or self.journal_error):
            return self.router.destinations.get(on_box, self.local)
        return dest

    def journal_summary(self) -> dict[str, Any]:
        """``journal`` part of ``onbox/status``."""
        return {
            "ok": self.journal is not None and self.journal_error is None,
            "error": self.journal_error,
            "note": self.journal_location.note,
        }

    def journal_stats(self, days: int) -> dict[str, Any]:
        """``onbox/journalStats``."""
        from datetime import timedelta

        from onbox.audit import journal_stats

        if self.journal is not None and hasattr(self.journal, "flush"):
            self.journal.flush()
        since = datetime.now(UTC) - timedelta(days=days)
        try:
            return dict(journal_stats(self._journal_dir(), since=since))
        except Exception as exc:
            return {"error": str(exc)}

    def _journal_dir(self) -> Path:
        if self.journal is not None and hasattr(self.journal, "path"):
            return Path(self.journal.path)
        if self.journal_location.directory is None:
            raise ValueError(self.journal_location.error)
        return self.journal_location.directory

    def verify_journal(self) -> VerifyJournalResult:
        """``onbox.verifyJournal``."""
        from onbox.audit import verify_journal

        if self.journal is not None and hasattr(self.journal, "flush"):
            self.journal.flush()
        try:
            result = verify_journal(self._journal_dir())
        except Exception as exc:
            return VerifyJournalResult(ok=False, entries=0, error=str(exc))
        error = result.first_error
        return VerifyJournalResult(
            ok=bool(result.ok), entries=result.entries, error=str(error) if error else None
        )

    # -- policy ------------------------------------------------------------------------

    def policy_summary(self) -> dict[str, Any]:
        """``policy`` part of ``onbox/status``."""
        p = self.policy
        expired = bool(p.expires and datetime.now(UTC) >= p.expires)
        return {
            "id": p.id,
            "serial": p.serial,
            "expires": p.expires.isoformat() if p.expires else None,
            "expired": expired or bool(self.policy_warning and "expired" in self.policy_warning),
            "warning": self.policy_warning,
            "source": p.source,
        }

    def policy_pull(self) -> PolicyPullResult:
        """``onbox/policyPull``: pull every source now."""
        if self.policy_service is None:
            return PolicyPullResult(
                applied=False, serial=self.policy.serial, message="no policy sources are configured"
            )
        results = self.policy_service.pull_now()
        applied = any(r.applied and r.changed for r in results)
        message = "; ".join(f"{r.origin}: {r.reason}" for r in results) or "nothing to pull"
        return PolicyPullResult(applied=applied, serial=self.policy.serial, message=message)

    # -- explain / health --------------------------------------------------------------

    def explain(self, uri: str, decision: Decision) -> ExplainResult:
        """``onbox/explain``: decision, route and a human rendering."""
        route = [RouteStep.of(step) for step in self.router.plan(decision)]
        chosen = self.router.destination_for(decision)
        listed = {r.destination for r in route}
        label = self.router.label_of(decision)
        for name in self.router.destinations:
            if name in listed:
                continue
            clearance = self.router.clearance_of(name)
            why = (
                f"never: clearance {clearance.name} < {label.name}"
                if clearance < label
                else f"not on the policy's route for {label.name}"
            )
            kind = self.router.destinations[name].kind
            route.append(RouteStep(name, kind, clearance.name, False, True, why))
        lines = [f"{decision.label.name} → {chosen.destination}", "", "Why this label:"]
        lines += [f"  • {line}" for line in reason_lines(decision)]
        if decision.findings:
            lines += ["", "Content findings (redacted before any egress):"]
            lines += [
                f"  • line {f.line}: {f.kind} {f.type} → {f.label.name}" for f in decision.findings
            ]
        if decision.suppressed:
            lines += ["", "Suppressed by the policy's allowlist (they do not raise the label):"]
            lines += [
                f"  • line {s.finding.line}: {s.finding.kind} {s.finding.type} — {s.reason} "
                f"({s.source}, until {s.expires})"
                for s in decision.suppressed
            ]
        lines += [
            "",
            f"Route for {decision.label.name} (policy {decision.policy_id}, serial {decision.policy_serial}):",
        ]
        lines += [
            f"  {'→' if r.destination == chosen.destination else ' '} {r.destination} ({r.kind}, clearance {r.clearance}): {r.why}"
            for r in route
        ]
        return ExplainResult.of(uri, decision, chosen.destination, route, "\n".join(lines))

    def health(self, model_state: str, model_error: str | None) -> dict[str, Any]:
        """``onbox/health``."""
        local = self.local
        unavailable = self.model_unavailable()
        if unavailable:
            model_state, model_error = ServerState.DISABLED, unavailable
        build = local.build_info() or {
            "version": None,
            "systemInfo": "not known until the model worker starts",
            "gpuOffload": False,
        }
        try:
            policy_state = describe_policy_state(self.store)
        except Exception as exc:
            policy_state = {"error": str(exc)}
        return {
            "version": __version__,
            "model": {
                "path": str(local.model_path) if local.model_path else self.settings.model.path,
                "name": local.model_name,
                "loaded": local.loaded,
                "state": model_state,
                "error": model_error,
                "sha256": local.model_sha256,
                "workerPid": local.worker_pid,
                "profile": local.profile,
                "crashes": local.crashes,
            },
            "gpuOffload": bool(build.get("gpuOffload")),
            "generation": {
                "generationsStarted": local.generations_started,
                "lastFinish": local.last_finish,
                "lastTokensOut": local.last_tokens_out,
                "lastPromptTokensEvaluated": local.last_prompt_tokens_evaluated,
                "lastTimings": local.last_timings,
            },
            "llamaCpp": build,
            "policy": {**self.policy_summary(), "store": policy_state},
            "journal": {
                **self.journal_location.to_json(),
                "writable": self.journal is not None and self.journal_error is None,
                "error": self.journal_error,
            },
            "trustRoot": {
                "path": str(self.store.trust_root_path),
                "present": self.store.trust_root_path.exists(),
            },
        }


def worker_model_settings(settings: Settings) -> ModelSettings:
    """The on-box model's settings, with the model worker's own."""
    m = settings.model
    return dataclasses.replace(
        model_settings(settings),
        extra_buffer_types=m.extra_buffer_types,
        worker_idle_seconds=m.worker_idle_seconds,
        deadline_seconds=m.deadline_seconds,
    )
