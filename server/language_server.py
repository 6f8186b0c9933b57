"""The language server's state: :class:`OnboxServer` and what it tracks per document.

The handlers in :mod:`onbox.server.lsp` and :mod:`onbox.server.requests` take an
:class:`OnboxServer` as their first argument; keeping the class here lets both import it
without importing each other. The status payload is built by :mod:`onbox.server.status`
from what this class gathers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from onbox import __version__
from onbox.classification.decision import Decision
from onbox.server.pipeline import CompletionResult, CompletionService
from onbox.server.protocol import OnboxProtocol, describe_bad_message, quiet_pygls_duplicates
from onbox.server.scheduler import CompletionScheduler
from onbox.server.settings import Settings
from onbox.server.status import STATUS, ServerState, label_change, status_payload
from onbox.server.wiring import Wiring

logger = logging.getLogger(__name__)

#: Pause after the last keystroke before a document is re-labelled.
RELABEL_DELAY_S = 0.15

T = TypeVar("T")


@dataclass
class DocumentState:
    """What the server tracks per open document."""

    decision: Decision | None = None
    status: dict[str, Any] = field(default_factory=dict)
    relabel: asyncio.TimerHandle | None = None  # pending re-label after typing


class OnboxServer(LanguageServer):
    """The language server: settings, the completion service and per-document state."""

    def __init__(self) -> None:
        super().__init__(name="onbox", version=__version__, protocol_cls=OnboxProtocol)
        quiet_pygls_duplicates()
        self.settings = Settings()
        self.wiring: Wiring | None = None
        self.model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onbox-model")
        #: Journal scans, verification and policy pulls: off the event loop, and never
        #: queued behind (or ahead of) a generation on the model thread.
        #: Which completion requests reach the model, and when (one live one per document).
        self.scheduler = CompletionScheduler(self.model_executor)
        self.io_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="onbox-io")
        self.docs: dict[str, DocumentState] = {}
        self.model_state = ServerState.LOADING
        self.model_error: str | None = None
        self.shown_messages: set[str] = set()
        self.completions: dict[str, CompletionResult] = {}
        self.background: set[asyncio.Future[None]] = set()

    # -- helpers -------------------------------------------------------------------------

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log errors the editor cannot act on instead of popping them up.

        Malformed requests were answered with an error already; malformed notifications
        and errors in notification handlers (a change for a document that is not open)
        have no one to answer, so they go to the log, not to the user's screen.
        """
        # One line each: stderr is the editor's output channel. The traceback is for -vv.
        logger.warning("%s", describe_bad_message(error, source))
        logger.debug("the bad message's traceback", exc_info=error)

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Run blocking work on the I/O threads so completions and cancels are still served."""
        return await asyncio.get_running_loop().run_in_executor(self.io_executor, work)

    @property
    def service(self) -> CompletionService:
        """The completion service (created at ``initialize``)."""
        assert self.wiring is not None, "the server is not initialized yet"
        return self.wiring.service

    def show_once(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        """``window/showMessage`` a message, at most once per distinct text."""
        if message in self.shown_messages:
            return
        self.shown_messages.add(message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def open_document(self, uri: str) -> tuple[str, int | None] | None:
        """Text and version of ``uri`` if the editor has it open now (any thread may ask)."""
        doc = self.workspace.text_documents.get(uri)
        return None if doc is None else (doc.source, doc.version)

    def doc_state(self, uri: str) -> DocumentState:
        """Per-document state, created on first use."""
        return self.docs.setdefault(uri, DocumentState())

    def decide(self, uri: str) -> Decision:
        """The current decision for an open document (cached per version)."""
        # The classifier caches per version and re-checks CODEOWNERS, attributes, tags and
        # the remote by stat, so asking again is cheap (tens of µs) and never stale.
        state = self.doc_state(uri)
        doc = self.workspace.get_text_document(uri)
        state.decision = self.service.classify(uri, doc.source, doc.version, doc.language_id)
        return state.decision

    def status_payload(
        self, uri: str | None, state: str | None = None, message: str = ""
    ) -> dict[str, Any]:
        """Gather the ``onbox/status`` inputs for one document (or the server, uri=None)."""
        unavailable = self.wiring.model_unavailable() if self.wiring is not None else None
        if unavailable:  # the model worker crashed under every profile: no more restarts
            self.model_state, self.model_error, state = ServerState.DISABLED, unavailable, None
        wiring = self.wiring
        decision = self.decide(uri) if uri is not None else None
        dest = None
        if decision is not None:
            dest = (
                wiring.destination_for(decision)
                if wiring is not None
                else self.service.destination_for(decision)
            )
        return status_payload(
            uri,
            state=state or self.model_state,
            message=message or (self.model_error or ""),
            model=self.service.local.model_name,
            policy=wiring.policy_summary() if wiring is not None else None,
            journal=wiring.journal_summary() if wiring is not None else None,
            decision=decision,
            destination=dest.name if dest is not None else None,
            destination_kind=dest.kind if dest is not None else None,
        )

    def publish_status(
        self, uri: str | None, state: str | None = None, message: str = "", force: bool = False
    ) -> None:
        """Send ``onbox/status`` if anything the editor shows has changed."""
        try:
            payload = self.status_payload(uri, state, message)
        except Exception:
            logger.exception("could not build status for %s", uri)
            return
        if uri is not None:
            doc = self.doc_state(uri)
            if doc.status == payload and not force:
                return
            changed = label_change(doc.status, payload)
            if changed is not None and self.wiring:
                self.wiring.journal_event("label-changed", changed)
            doc.status = payload
        self.protocol.notify(STATUS, payload)

    async def label_and_publish(self, uri: str) -> None:
        """Label the document's current version on an I/O thread, then announce it.

        Labelling a version the classifier has not seen scans the whole text: about
        150 ms for a 5 MB file with the regular-expression detectors and over a second
        with tree-sitter ones (bench/results/classification-incremental.json). That runs
        off the loop; the status that follows finds the decision in the classifier's
        per-version cache (or, if the text changed meanwhile, re-labels incrementally).
        """
        if self.wiring is None or uri not in self.workspace.text_documents:
            return
        doc = self.workspace.get_text_document(uri)
        source, version, language = doc.source, doc.version, doc.language_id
        service = self.service
        await self.off_loop(lambda: service.classify(uri, source, version, language))
        if uri in self.workspace.text_documents:
            self.publish_status(uri)

    def label_in_background(self, uri: str) -> None:
        """Start :meth:`label_and_publish` without waiting for it."""
        task = asyncio.ensure_future(self.label_and_publish(uri))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def publish_all(self, state: str | None = None) -> None:
        """Re-send status for the server and every open document."""
        self.publish_status(None, state, force=True)
        for uri in list(self.workspace.text_documents):
            self.publish_status(uri, state)

    def relabel_all(self, why: str | None = None) -> None:
        """Forget every cached decision and re-announce labels.

        With ``why`` (a signal file changed, settings changed, a save) the classifier's
        caches are dropped and the label generation moves on first, so nothing decided
        before the event is reused; a policy swap has done that already.
        """
        if why is not None and self.wiring is not None:
            self.wiring.labels.invalidate(why)
        for state in self.docs.values():
            state.decision = None
        self.publish_all()
