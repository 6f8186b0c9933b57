"""The ``openai`` destination kind: any OpenAI-compatible completion service.

OpenAI, Azure OpenAI, vLLM, llama.cpp's server, Ollama and LM Studio all speak it.
With ``fim = true`` the request goes to ``{base_url}/completions`` with ``prompt`` (the
prefix) and ``suffix``; otherwise to ``{base_url}/chat/completions`` as a hole-filling
chat. With ``api_version`` set the service is Azure OpenAI: ``base_url`` is the
deployment URL (``https://<resource>.openai.azure.com/openai/deployments/<name>``), the
version goes in the ``api-version`` query parameter and the key in the ``api-key``
header. Answers are streamed as server-sent events.

Errors are those of :mod:`onbox.inference.remote`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from onbox.inference.destination import CompletionRequest, DestinationKind
from onbox.inference.errors import DestinationProtocolError

from .remote import (
    CHAT_SYSTEM,
    PreparedRequest,
    RemoteDestination,
    StreamState,
    comment_prefix,
    hole_filling_prompt,
    render_context,
    unwrap_chat_answer,
)

logger = logging.getLogger(__name__)


class OpenAIDestination(RemoteDestination):
    """An OpenAI-compatible service (``kind = "openai"`` in the policy)."""

    kind: str = DestinationKind.OPENAI

    @property
    def azure(self) -> bool:
        """Whether this is an Azure OpenAI deployment (``api_version`` is set)."""
        return bool(self.config.api_version)

    def _url(self, path: str) -> str:
        url = f"{(self.config.base_url or '').rstrip('/')}/{path}"
        if self.config.api_version:
            url += "?" + urlencode({"api-version": self.config.api_version})
        return url

    def _auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            return {}
        if self.azure:
            return {"api-key": self._api_key}
        return {"Authorization": f"Bearer {self._api_key}"}

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The JSON body for ``/completions`` (FIM) or ``/chat/completions``."""
        max_tokens = request.max_tokens
        if self.config.max_tokens:
            max_tokens = min(max_tokens, self.config.max_tokens)
        payload: dict[str, Any] = {}
        if self.config.model:
            payload["model"] = self.config.model
        if self.config.fim:
            payload["prompt"] = (
                render_context(request, comment_prefix(request.language)) + request.prefix
            )
            payload["suffix"] = request.suffix
            path, chat = "completions", False
        else:
            payload["messages"] = [
                {"role": "system", "content": CHAT_SYSTEM},
                {"role": "user", "content": hole_filling_prompt(request)},
            ]
            path, chat = "chat/completions", True
        payload["max_tokens"] = max_tokens
        payload["temperature"] = request.temperature
        payload["stream"] = True
        # Without this OpenAI streams no token counts, and the journal's cost and the
        # eval's cost would price every cloud completion at zero.
        payload["stream_options"] = {"include_usage": True}
        if request.stop:
            payload["stop"] = list(request.stop)[:4]  # OpenAI accepts at most four
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return PreparedRequest(
            self._url(path),
            body,
            {"Content-Type": "application/json", "Accept": "text/event-stream"},
            chat,
        )

    def _on_event(self, event: Mapping[str, Any], state: StreamState) -> str:
        if "error" in event:
            raise DestinationProtocolError(f"destination {self.name} reported an error mid-stream")
        self._usage(event, state)
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise DestinationProtocolError(
                f"destination {self.name} streamed an event without choices"
            )
        if not choices:
            return ""  # e.g. a usage-only or Azure content-filter event
        choice = choices[0]
        if not isinstance(choice, dict):
            raise DestinationProtocolError(f"destination {self.name} streamed a malformed choice")
        if choice.get("finish_reason"):
            state.finish_reason = str(choice["finish_reason"])
        if "text" in choice:
            return _text(choice["text"], self.name)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            return _text(delta.get("content") or "", self.name)
        raise DestinationProtocolError(f"destination {self.name} streamed a choice without text")

    def _on_body(self, body: Mapping[str, Any], state: StreamState) -> None:
        self._usage(body, state)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DestinationProtocolError(f"destination {self.name} answered without choices")
        choice = choices[0]
        state.finish_reason = str(choice.get("finish_reason") or "stop")
        if "text" in choice:
            state.parts.append(_text(choice["text"], self.name))
            return
        message = choice.get("message")
        if not isinstance(message, dict):
            raise DestinationProtocolError(f"destination {self.name} answered without text")
        state.parts.append(_text(message.get("content") or "", self.name))

    def _usage(self, event: Mapping[str, Any], state: StreamState) -> None:
        if isinstance(event.get("model"), str):
            state.model = event["model"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            state.tokens_in = int(usage.get("prompt_tokens") or state.tokens_in)
            state.tokens_out = int(usage.get("completion_tokens") or state.tokens_out)

    def _finish_text(self, text: str, prepared: PreparedRequest) -> str:
        return unwrap_chat_answer(text) if prepared.chat else text


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise DestinationProtocolError(f"destination {name} sent text that is not a string")
    return value
