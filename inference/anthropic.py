"""The ``anthropic`` destination kind: the Messages API with a hole-filling prompt.

``POST {base_url}/v1/messages`` with the ``x-api-key`` and ``anthropic-version``
headers (``api_version`` in the policy overrides the default version); answers stream
as server-sent events (``content_block_delta``, ``message_delta``, ``message_stop``,
``error``).

Errors are those of :mod:`onbox.inference.remote`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from onbox.inference.destination import CompletionRequest, DestinationKind
from onbox.inference.errors import DestinationProtocolError, DestinationUnavailable

from .remote import (
    CHAT_SYSTEM,
    PreparedRequest,
    RemoteDestination,
    StreamState,
    hole_filling_prompt,
    unwrap_chat_answer,
)

logger = logging.getLogger(__name__)

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicDestination(RemoteDestination):
    """Anthropic's Messages API (``kind = "anthropic"`` in the policy)."""

    kind: str = DestinationKind.ANTHROPIC

    def _auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The JSON body for ``/v1/messages``."""
        base = (self.config.base_url or "").rstrip("/")
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        max_tokens = request.max_tokens
        if self.config.max_tokens:
            max_tokens = min(max_tokens, self.config.max_tokens)
        payload: dict[str, Any] = {
            "model": self.config.model or "",
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "system": CHAT_SYSTEM,
            "messages": [{"role": "user", "content": hole_filling_prompt(request)}],
            "stream": True,
        }
        if request.stop:
            payload["stop_sequences"] = list(request.stop)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": self.config.api_version or DEFAULT_ANTHROPIC_VERSION,
        }
        return PreparedRequest(url, body, headers, chat=True)

    def _on_event(self, event: Mapping[str, Any], state: StreamState) -> str:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict):
                raise DestinationProtocolError(f"destination {self.name} sent a malformed delta")
            text = delta.get("text", "")
            if not isinstance(text, str):
                raise DestinationProtocolError(
                    f"destination {self.name} sent text that is not a string"
                )
            return text
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._usage(message, state)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                state.finish_reason = _STOP_REASONS.get(str(delta["stop_reason"]), "stop")
            self._usage(event, state)
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            error = event.get("error")
            etype = error.get("type") if isinstance(error, dict) else None
            if etype == "overloaded_error":
                raise DestinationUnavailable(f"destination {self.name} is overloaded")
            raise DestinationProtocolError(
                f"destination {self.name} reported {etype or 'an error'} mid-stream"
            )
        elif kind is None:
            raise DestinationProtocolError(
                f"destination {self.name} streamed an event without a type"
            )
        return ""  # content_block_start/stop, ping and future event types

    def _on_body(self, body: Mapping[str, Any], state: StreamState) -> None:
        content = body.get("content")
        if not isinstance(content, list):
            raise DestinationProtocolError(f"destination {self.name} answered without content")
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                text = block.get("text", "")
                if not isinstance(text, str):
                    raise DestinationProtocolError(
                        f"destination {self.name} sent text that is not a string"
                    )
                state.parts.append(text)
        state.finish_reason = _STOP_REASONS.get(str(body.get("stop_reason")), "stop")
        self._usage(body, state)

    def _usage(self, message: Mapping[str, Any], state: StreamState) -> None:
        if isinstance(message.get("model"), str):
            state.model = message["model"]
        usage = message.get("usage")
        if isinstance(usage, dict):
            state.tokens_in = int(usage.get("input_tokens") or state.tokens_in)
            state.tokens_out = int(usage.get("output_tokens") or state.tokens_out)

    def _finish_text(self, text: str, prepared: PreparedRequest) -> str:
        return unwrap_chat_answer(text)
