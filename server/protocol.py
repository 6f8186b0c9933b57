"""The JSON-RPC protocol with answers for malformed requests, and one log line for each.

pygls reports a request whose parameters do not deserialize only through its error
handler, so the client never gets an answer and waits forever. Here such a request is
answered with ``InvalidParams`` naming the method, and the error handler is told it was
already answered. Onbox's own requests are typed the same way (:data:`REQUEST_TYPES`), so
their parameters are checked before a handler runs.

Every bad message also reaches the server's error handler, which logs it as one line
(:func:`describe_bad_message`); stderr is the editor's output channel. pygls itself logs
the same event again, with a full traceback (a cattrs error group is dozens of lines), so
:class:`DuplicateTracebacks` drops those records unless debug logging is on (``-vv``).
"""

from __future__ import annotations

import logging
from typing import Any

import cattrs
from cattrs.v import format_exception
from pygls.exceptions import (
    FeatureRequestError,
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcMethodNotFound,
)
from pygls.protocol import LanguageServerProtocol

from onbox.server.messages import REQUEST_TYPES

logger = logging.getLogger(__name__)

#: A log line about one bad message is cut to this many characters.
MAX_LINE = 300

#: pygls's own records of a bad message: each is reported once more, in one line, through
#: the server's error handler.
PYGLS_DUPLICATES = (
    "Unable to deserialize message",
    "Unable to handle message",
    "Exception occurred for message",
    "Failed to handle request",
    "Failed to handle notification",
)


class AnsweredMalformedRequest(Exception):
    """A malformed request that has already been answered with an error response."""


class MalformedNotification(JsonRpcInvalidParams):
    """A notification whose parameters do not deserialize (there is no one to answer)."""


def _problem(exc: BaseException, type_: type | None) -> str:
    text = format_exception(exc, type_)
    # A validator's own words say what is wrong ("days must be a positive number, not 0").
    return str(exc) if text == "invalid value" and str(exc) else text


def problems_of(exc: BaseException | None) -> str:
    """What was wrong with the parameters, as short as cattrs can say it."""
    if isinstance(exc, cattrs.BaseValidationError):
        found = cattrs.transform_error(exc, path="$", format_exception=_problem)
        return "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")
    return "" if exc is None else f"{type(exc).__name__}: {exc}"


def describe_bad_message(error: BaseException, source: Any = None) -> str:
    """One line for the log about a message the server could not handle.

    ``source`` is pygls's ``FeatureRequestError`` or ``FeatureNotificationError``. A plain
    exception from a request handler is the server's own failure (the request itself was
    well-formed: a malformed one fails earlier, in ``structure_message``), and is said so,
    not blamed on the editor.
    """
    if isinstance(error, AnsweredMalformedRequest | MalformedNotification):
        text = str(error)
    elif isinstance(error, JsonRpcMethodNotFound):
        text = f"answered MethodNotFound: {error}"
    elif isinstance(error, JsonRpcInternalError):
        text = f"a handler failed on a message from the editor: {error}"
    elif isinstance(error, JsonRpcException):
        text = f"answered an error: {error}"
    elif source is FeatureRequestError:
        text = (
            "onbox failed while handling a request and answered InternalError (a bug in"
            f" onbox; run with -vv for the traceback): {type(error).__name__}: {error}"
        )
    else:
        text = f"ignored a bad message from the editor: {type(error).__name__}: {error}"
    line = " ".join(text.split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


class DuplicateTracebacks(logging.Filter):
    """Drops pygls's multi-line records of bad messages, each of which is logged once more."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it repeats a bad-message report (kept at debug level)."""
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        return not str(record.msg).startswith(PYGLS_DUPLICATES)


def quiet_pygls_duplicates() -> None:
    """Install :class:`DuplicateTracebacks` on the pygls loggers that repeat bad messages."""
    for name in ("pygls.protocol.json_rpc", "pygls.io_", "pygls.server"):
        target = logging.getLogger(name)
        if not any(isinstance(f, DuplicateTracebacks) for f in target.filters):
            target.addFilter(DuplicateTracebacks())


class OnboxProtocol(LanguageServerProtocol):
    """``LanguageServerProtocol`` that never leaves a malformed request unanswered."""

    # The base class wraps this in lru_cache; a dict lookup first needs no cache.
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        """lsprotocol's message class, or Onbox's own for ``onbox/*`` requests (typed params)."""
        return REQUEST_TYPES.get(method) or super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Deserialize; on failure answer the request (if it is one) with InvalidParams."""
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                cause = exc.__cause__
                detail = f": {problems_of(cause)}" if cause is not None else ""
                error = JsonRpcInvalidParams(
                    message=f"invalid params for {data['method']}{detail}".splitlines()[0][:500]
                )
                self._send_response(data["id"], error=error.to_response_error())
                raise AnsweredMalformedRequest(
                    f"answered a malformed {data['method']} request (id {data['id']!r}) with"
                    f" InvalidParams: {problems_of(exc.__cause__)}"
                ) from exc
            if isinstance(data, dict) and "method" in data:
                raise MalformedNotification(
                    f"ignored a malformed {data['method']} notification:"
                    f" {problems_of(exc.__cause__)}"
                ) from exc
            raise

    def cancel_pending_requests(self) -> None:
        """Cancel every request still running except the current one (``shutdown``).

        pygls does this too, but iterates over the live table while each cancelled
        command's callback removes itself from it, so ``shutdown`` failed whenever a slow
        command (a journal verification) was still running. Cancelled here first, over a
        copy, pygls finds nothing left to cancel.
        """
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current and not future.done():
                future.cancel()
