"""The JSON-RPC protocol with answers for malformed requests.

pygls reports a request whose parameters do not deserialize only through its error
handler, so the client never gets an answer and waits forever. Here such a request is
answered with ``InvalidParams`` naming the method, and the error handler is told it was
already answered.
"""

from __future__ import annotations

import logging
from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol

logger = logging.getLogger(__name__)


class AnsweredMalformedRequest(Exception):
    """A malformed request that has already been answered with an error response."""


class OnboxProtocol(LanguageServerProtocol):
    """``LanguageServerProtocol`` that never leaves a malformed request unanswered."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Deserialize; on failure answer the request (if it is one) with InvalidParams."""
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                cause = exc.__cause__
                detail = f": {cause}" if cause is not None else ""
                error = JsonRpcInvalidParams(
                    message=f"invalid params for {data['method']}{detail}".splitlines()[0][:500]
                )
                self._send_response(data["id"], error=error.to_response_error())
                raise AnsweredMalformedRequest(str(data.get("method"))) from exc
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
