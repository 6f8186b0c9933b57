"""The Onbox language server (pygls 2.x).

Handlers stay thin: they fetch the document, hand the work to
:class:`~onbox.server.pipeline.CompletionService` on the model executor, and turn the
result into ``lsprotocol`` values. State lives on
:class:`~onbox.server.language_server.OnboxServer`, never in module globals.

Concurrency: one worker thread runs the model, so generations never overlap. Which
request reaches it, and when, is :class:`~onbox.server.scheduler.CompletionScheduler`'s
business (supersede, debounce, cancel); :func:`run_completion` only gathers the inputs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lsprotocol import types

from onbox.inference.destination import CancelToken, DestinationKind
from onbox.inference.errors import ModelError
from onbox.server import requests
from onbox.server.cli import add_log_file
from onbox.server.language_server import RELABEL_DELAY_S, OnboxServer
from onbox.server.lsp_items import inline_items, menu_items
from onbox.server.pipeline import CompletionResult, DocumentInput
from onbox.server.positions import position_to_offset
from onbox.server.protocol import OnboxProtocol
from onbox.server.scheduler import Job
from onbox.server.settings import parse_settings
from onbox.server.status import ServerState
from onbox.server.wiring import Wiring

logger = logging.getLogger(__name__)

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
    # The egress gate labels what a document holds at the moment of sending.
    ls.wiring.labels.documents = ls.open_document
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
    ls.model_state = ServerState.LOADING
    ls.publish_all(ServerState.LOADING)

    def report(message: str) -> None:
        if supports:
            progress.report(token, types.WorkDoneProgressReport(message=message))

    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(ls.model_executor, lambda: ls.service.local.load(report))
        ls.model_state, ls.model_error = ServerState.READY, None
    except ModelError as exc:
        ls.model_state, ls.model_error = ServerState.DISABLED, str(exc)
        ls.show_once(f"Onbox: {exc}")
    except Exception as exc:  # never let a load failure kill the server
        logger.exception("model load failed")
        ls.model_state, ls.model_error = ServerState.DISABLED, f"model load failed: {exc}"
        ls.show_once(f"Onbox: model load failed: {exc}")
    finally:
        if supports:
            progress.end(token, types.WorkDoneProgressEnd(message=ls.model_state))
    ls.publish_all()


@server.feature(types.SHUTDOWN)
def shutdown(ls: OnboxServer, params: None) -> None:
    """Stop background work and close the journal."""
    ls.scheduler.cancel_all("shutdown")
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
    ls.scheduler.forget(params.text_document.uri, "closed")
    state = ls.docs.pop(params.text_document.uri, None)
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
    """Gather one request's inputs and let the scheduler run the pipeline on the model thread."""

    def prepare() -> Job[CompletionResult] | None:
        # After the debounce: read the document as it is now.
        if uri not in ls.workspace.text_documents:
            logger.info("completion asked for %s, which is not open; answering nothing", uri)
            return None
        doc = _document_input(ls, uri, position)
        assert ls.wiring is not None
        if (
            ls.model_state == ServerState.DISABLED
            and ls.wiring.destination_for(ls.decide(uri)).kind == DestinationKind.LLAMA_CPP
        ):
            logger.info("no on-box model and %s may not leave: answering nothing", uri)
            return None  # no model and nowhere else this file may go: answer nothing
        others = _others(ls, uri)
        loop = asyncio.get_running_loop()

        def work(cancel: CancelToken) -> CompletionResult:
            # Runs on the model thread: the request is now the one the model serves. The
            # label is decided again from here on (the pipeline, then the egress gate):
            # whatever was decided while this request waited is not trusted.
            if not cancel.cancelled:
                loop.call_soon_threadsafe(ls.publish_status, uri, ServerState.GENERATING)
            result = ls.service.complete(doc, cancel, others)
            if ls.wiring is not None:
                ls.wiring.note_route(result.fallbacks, result.egress_seq)
            return result

        return work

    def on_idle() -> None:
        if uri in ls.workspace.text_documents:
            ls.publish_status(uri, ls.model_state)

    result = await ls.scheduler.run(
        uri, prepare, debounce_ms=ls.settings.completion.debounce_ms, on_idle=on_idle
    )
    if result is not None:
        ls.completions[result.id] = result
        if len(ls.completions) > 256:
            ls.completions.pop(next(iter(ls.completions)))
    return result


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
