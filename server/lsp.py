"""The Onbox language server (pygls 2.x).

Handlers stay thin: they fetch the document, hand the work to
:class:`~onbox.server.pipeline.CompletionService` on the model executor, and turn the
result into ``lsprotocol`` values. State lives on :class:`OnboxServer`, never in module
globals.

Concurrency: one worker thread runs the model, so generations never overlap. Each
document has at most one live request: a newer one cancels the older (which answers
empty at once, or stops within one token if it is generating), and a request that was
superseded while queued never reaches the model. A request that closely follows another
for the same document waits a short debounce first, so a typing burst starts few
generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from onbox import __version__
from onbox.classification.decision import Decision
from onbox.inference.destination import CancelToken
from onbox.inference.errors import ModelError
from onbox.server import requests
from onbox.server.cli import add_log_file
from onbox.server.lsp_items import inline_items, menu_items
from onbox.server.pipeline import CompletionResult, CompletionService, DocumentInput
from onbox.server.positions import position_to_offset
from onbox.server.protocol import OnboxProtocol, describe_bad_message, quiet_pygls_duplicates
from onbox.server.settings import Settings, parse_settings
from onbox.server.status import STATUS, label_change, status_payload
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
    inflight: CancelToken | None = None
    last_request_at: float = 0.0
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
        self.io_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="onbox-io")
        self.docs: dict[str, DocumentState] = {}
        self.model_state = "loading"
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
        logger.warning("%s", describe_bad_message(error))
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
            self.model_state, self.model_error, state = "disabled", unavailable, None
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


server = OnboxServer()


# -- lifecycle ----------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
def initialize(ls: OnboxServer, params: types.InitializeParams) -> None:
    """Read settings from ``initializationOptions`` and build the wiring."""
    settings, problems = parse_settings(params.initialization_options, ls.settings)
    ls.settings = settings
    loop = asyncio.get_running_loop()

    def notify_error(message: str) -> None:
        loop.call_soon_threadsafe(ls.show_once, message)

    def on_policy_change() -> None:
        loop.call_soon_threadsafe(ls.relabel_all)

    if settings.log_file:
        problem = add_log_file(settings.log_file)
        if problem is not None:
            problems.append(f"onbox.logFile: {problem}")
    ls.wiring = Wiring(settings, notify_error=notify_error, on_policy_change=on_policy_change)
    for problem in problems:
        ls.show_once(f"Onbox settings: {problem}", types.MessageType.Warning)


@server.feature(types.INITIALIZED)
async def initialized(ls: OnboxServer, params: types.InitializedParams) -> None:
    """Start the model load (with work-done progress) and the policy service."""
    assert ls.wiring is not None
    ls.wiring.start()
    # Registration is a request to the client: don't hold the model load up waiting for it.
    ls.background.add(asyncio.ensure_future(watch_signal_files(ls)))
    await load_model(ls)


#: Repo-local files whose change can change a label.
SIGNAL_FILES = (
    "**/CODEOWNERS",
    "**/.gitattributes",
    "**/.onbox.toml",
    "**/.git/config",
    "**/.git/info/attributes",
    "**/.git/HEAD",  # a checkout can change the root commits a pinned repo rule checks
)


async def watch_signal_files(ls: OnboxServer) -> None:
    """Ask the editor to tell us when CODEOWNERS, attributes, tags or remotes change."""
    workspace = ls.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=g) for g in SIGNAL_FILES]
    )
    registration = types.Registration(
        id="onbox-signal-files",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=options,
    )
    try:
        await ls.client_register_capability_async(
            types.RegistrationParams(registrations=[registration])
        )
    except Exception as exc:
        logger.info("the client refused file watching (%s); labels refresh on save", exc)


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def did_change_watched_files(ls: OnboxServer, params: types.DidChangeWatchedFilesParams) -> None:
    """A signal file changed: re-label every open document."""
    ls.relabel_all("watched files changed")


async def load_model(ls: OnboxServer) -> None:
    """Load the model on the model thread, reporting progress; on failure, say how to fix it."""
    token = f"onbox-load-{time.monotonic_ns()}"
    progress = ls.work_done_progress
    supports = bool(
        ls.client_capabilities.window and ls.client_capabilities.window.work_done_progress
    )
    if supports:
        try:
            await progress.create_async(token)
            progress.begin(
                token, types.WorkDoneProgressBegin(title="Onbox: loading model", cancellable=False)
            )
        except Exception:
            supports = False
    ls.model_state = "loading"
    ls.publish_all("loading")

    def report(message: str) -> None:
        if supports:
            progress.report(token, types.WorkDoneProgressReport(message=message))

    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(ls.model_executor, lambda: ls.service.local.load(report))
        ls.model_state, ls.model_error = "ready", None
    except ModelError as exc:
        ls.model_state, ls.model_error = "disabled", str(exc)
        ls.show_once(f"Onbox: {exc}")
    except Exception as exc:  # never let a load failure kill the server
        logger.exception("model load failed")
        ls.model_state, ls.model_error = "disabled", f"model load failed: {exc}"
        ls.show_once(f"Onbox: model load failed: {exc}")
    finally:
        if supports:
            progress.end(token, types.WorkDoneProgressEnd(message=ls.model_state))
    ls.publish_all()


@server.feature(types.SHUTDOWN)
def shutdown(ls: OnboxServer, params: None) -> None:
    """Stop background work and close the journal."""
    for state in ls.docs.values():
        if state.inflight:
            state.inflight.cancel("shutdown")
    if isinstance(ls.protocol, OnboxProtocol):
        ls.protocol.cancel_pending_requests()
    if ls.wiring is not None:
        ls.wiring.stop()


# -- documents ----------------------------------------------------------------------------


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: OnboxServer, params: types.DidOpenTextDocumentParams) -> None:
    """Label the new document (off the loop: a first scan reads the whole text), announce it."""
    ls.doc_state(params.text_document.uri)
    await ls.label_and_publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: OnboxServer, params: types.DidChangeTextDocumentParams) -> None:
    """Re-label once typing pauses.

    Classifying scans the whole text, which is cheap for ordinary files but not for
    multi-megabyte ones, so a burst of keystrokes re-labels once, after the last, on an
    I/O thread. A completion request classifies its own version anyway, so routing never
    waits on this.
    """
    uri = params.text_document.uri
    state = ls.doc_state(uri)
    if state.relabel is not None:
        state.relabel.cancel()
    loop = asyncio.get_running_loop()
    state.relabel = loop.call_later(RELABEL_DELAY_S, ls.label_in_background, uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: OnboxServer, params: types.DidSaveTextDocumentParams) -> None:
    """Saving may change repo-local signals (CODEOWNERS, .gitattributes): re-label everything."""
    ls.relabel_all("saved")


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: OnboxServer, params: types.DidCloseTextDocumentParams) -> None:
    """Cancel any request for the document and forget it."""
    state = ls.docs.pop(params.text_document.uri, None)
    if state and state.inflight:
        state.inflight.cancel("closed")
    if state and state.relabel is not None:
        state.relabel.cancel()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: OnboxServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply pushed settings (completion limits take effect at once).

    The editor sends the whole section, holding only what the user set, so a key it
    leaves out goes back to the server's default. No settings at all changes nothing.
    """
    if params.settings is not None:
        settings, problems = parse_settings(params.settings)
        for problem in problems:
            ls.show_once(f"Onbox settings: {problem}", types.MessageType.Warning)
        ls.settings.completion = settings.completion
    ls.service.settings = ls.settings
    ls.relabel_all("settings changed")


# -- completion ---------------------------------------------------------------------------


def _document_input(ls: OnboxServer, uri: str, position: types.Position) -> DocumentInput:
    doc = ls.workspace.get_text_document(uri)
    text = doc.source
    encoding = str(ls.workspace.position_encoding or "utf-16")
    offset = position_to_offset(text, position.line, position.character, encoding)
    return DocumentInput(
        uri=uri, text=text, offset=offset, language=doc.language_id, version=doc.version
    )


def _others(ls: OnboxServer, uri: str) -> list[DocumentInput]:
    out = []
    for other_uri, doc in list(ls.workspace.text_documents.items()):
        if other_uri != uri:
            out.append(DocumentInput(other_uri, doc.source, 0, doc.language_id, doc.version))
    return out


async def run_completion(
    ls: OnboxServer, uri: str, position: types.Position
) -> CompletionResult | None:
    """Supersede the previous request, debounce bursts, and run the pipeline on the model thread."""
    state = ls.doc_state(uri)
    cancel = CancelToken()
    now = time.monotonic()
    previous = state.inflight
    burst = (
        previous is not None
        or (now - state.last_request_at) * 1000 < ls.settings.completion.debounce_ms
    )
    if previous is not None:
        previous.cancel("superseded")
    state.inflight = cancel
    state.last_request_at = now
    try:
        if burst and ls.settings.completion.debounce_ms > 0:
            await asyncio.sleep(ls.settings.completion.debounce_ms / 1000)
            if cancel.cancelled:
                return None
        if uri not in ls.workspace.text_documents:
            logger.info("completion asked for %s, which is not open; answering nothing", uri)
            return None
        doc = _document_input(ls, uri, position)
        assert ls.wiring is not None
        if (
            ls.model_state == "disabled"
            and ls.wiring.destination_for(ls.decide(uri)).kind == "llama-cpp"
        ):
            logger.info("no on-box model and %s may not leave: answering nothing", uri)
            return None  # no model and nowhere else this file may go: answer nothing
        others = _others(ls, uri)
        loop = asyncio.get_running_loop()

        def work() -> CompletionResult:
            # Runs on the model thread: the request is now the one the model serves. The
            # label is decided again from here on (the pipeline, then the egress gate):
            # whatever was decided while this request waited is not trusted.
            if not cancel.cancelled:
                loop.call_soon_threadsafe(ls.publish_status, uri, "generating")
            result = ls.service.complete(doc, cancel, others)
            if ls.wiring is not None:
                ls.wiring.note_route(result.fallbacks, result.egress_seq)
            return result

        job = loop.run_in_executor(ls.model_executor, work)
        try:
            result = await asyncio.shield(job)
        except asyncio.CancelledError:
            # $/cancelRequest: stop the token loop, and answer once it has stopped
            # (within one token) so the model is free for the next request.
            cancel.cancel("$/cancelRequest")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(job, timeout=30)
            raise
        ls.completions[result.id] = result
        if len(ls.completions) > 256:
            ls.completions.pop(next(iter(ls.completions)))
        return result
    except asyncio.CancelledError:
        cancel.cancel("$/cancelRequest")
        raise
    finally:
        if state.inflight is cancel:
            state.inflight = None
            if uri in ls.workspace.text_documents:
                # After the answer is on its way: the editor waits for the completion, not this.
                asyncio.get_running_loop().call_soon(ls.publish_status, uri, ls.model_state)


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: OnboxServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    """Ghost text at the cursor."""
    result = await run_completion(ls, params.text_document.uri, params.position)
    return inline_items(result, params.text_document.uri, params.position)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
async def completion(ls: OnboxServer, params: types.CompletionParams) -> types.CompletionList:
    """One menu item whose edit inserts the suggestion."""
    uri = params.text_document.uri
    result = await run_completion(ls, uri, params.position)
    if result is None or not result.text:
        return menu_items(None, uri, "", 0, params.position)
    text = ls.workspace.get_text_document(uri).source
    encoding = str(ls.workspace.position_encoding or "utf-16")
    offset = position_to_offset(text, params.position.line, params.position.character, encoding)
    return menu_items(result, uri, text, offset, params.position, encoding)


# Onbox's own requests and commands.
requests.register(server)
