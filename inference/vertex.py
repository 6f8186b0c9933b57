"""The ``vertex`` destination kind: models served by Google Vertex AI.

Every model lives under one path, chosen by the policy's ``project``, ``location``,
``model`` and ``publisher`` (taken from the model name when not set)::

    {endpoint}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}

- ``google`` (Gemini): ``streamGenerateContent?alt=sse`` (SSE) or ``generateContent``;
- ``anthropic`` (Claude): ``streamRawPredict`` (SSE, the Messages API) or ``rawPredict``;
- ``mistralai`` (Codestral fill-in-the-middle): ``streamRawPredict`` or ``rawPredict``;

the first of each pair with ``stream = true`` (the default).

``endpoint`` is ``https://{location}-aiplatform.googleapis.com`` (``global``:
``https://aiplatform.googleapis.com``), or the policy's ``base_url`` (a Private Service
Connect endpoint). The bearer token comes from Application Default Credentials through
google-auth (the optional extra ``onbox[vertex]``): ``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, workload identity federation, or the metadata
server on Google Cloud. Tokens are fetched and refreshed at send time over TLS verified
against the system store, through the policy's ``proxy`` (never one from the
environment), plain http only to loopback; they never appear in :meth:`describe`, logs,
errors or the journal.

Errors are those of :mod:`onbox.inference.remote`: no or unusable credentials, 401/403,
429 (``RESOURCE_EXHAUSTED``, with ``Retry-After``) and 5xx are
:class:`DestinationUnavailable`; a stalled answer is :class:`DestinationTimeout`; other
4xx and malformed answers are :class:`DestinationProtocolError`. Routing falls back
along the label's route on every one of them. After a 401 the cached token is dropped,
so the next request fetches a fresh one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from onbox.classification.policy_model import DestinationConfig
from onbox.inference.anthropic import AnthropicDestination
from onbox.inference.destination import CompletionRequest, DestinationKind
from onbox.inference.errors import (
    DestinationError,
    DestinationProtocolError,
    DestinationUnavailable,
)
from onbox.inference.openai_compat import OpenAIDestination

from .remote import (
    CHAT_SYSTEM,
    PreparedRequest,
    RemoteDestination,
    StreamState,
    comment_prefix,
    hole_filling_prompt,
    is_loopback_host,
    parse_retry_after,
    render_context,
    unwrap_chat_answer,
)

logger = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERTEX_VERSION = "vertex-2023-10-16"
_GEMINI_STOPS = {"STOP": "stop", "MAX_TOKENS": "length"}


def publisher_of(config: DestinationConfig) -> str:
    """The policy's ``publisher``, else the one the model name implies."""
    if config.publisher:
        return config.publisher
    model = (config.model or "").lower()
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith(("codestral", "mistral")):
        return "mistralai"
    return "google"


def vertex_endpoint(location: str) -> str:
    """The public regional (or global) endpoint of ``location``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


class GoogleCredentials:
    """Application Default Credentials, loaded on first use and refreshed when stale."""

    def __init__(
        self,
        destination: str,
        *,
        proxy: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._destination = destination
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._client = httpx.Client(
            proxy=proxy,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(10.0),
            transport=transport,
        )

    def token(self) -> str:
        """A valid access token; raise :class:`DestinationUnavailable` saying what to fix."""
        import google.auth
        import google.auth.exceptions

        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=[SCOPE])
                if not self._credentials.valid:
                    self._credentials.refresh(_token_request(self._client))
                token = self._credentials.token
            except google.auth.exceptions.DefaultCredentialsError:
                raise DestinationUnavailable(
                    f"destination {self._destination}: no Google credentials; run `gcloud auth "
                    "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
                ) from None
            except Exception as exc:  # RefreshError, TransportError, a malformed key file
                self._credentials = None
                raise DestinationUnavailable(
                    f"destination {self._destination}: Google credentials could not be "
                    f"refreshed ({type(exc).__name__}); renew them (`gcloud auth "
                    "application-default login`) — completions go elsewhere meanwhile"
                ) from None
        if not isinstance(token, str) or not token:
            raise DestinationUnavailable(f"destination {self._destination}: no access token")
        return token

    def reset(self) -> None:
        """Drop the cached credentials; the next :meth:`token` loads and refreshes them."""
        with self._lock:
            self._credentials = None

    def close(self) -> None:
        """Close the token client's connections."""
        self._client.close()


def _token_request_class() -> type:
    import google.auth.exceptions
    import google.auth.transport

    class Response(google.auth.transport.Response):
        def __init__(self, resp: httpx.Response) -> None:
            self._resp = resp

        @property
        def status(self) -> int:
            return self._resp.status_code

        @property
        def headers(self) -> Mapping[str, str]:
            return self._resp.headers

        @property
        def data(self) -> bytes:
            return self._resp.content

    class Request(google.auth.transport.Request):
        """google-auth's transport over httpx, with the destination's TLS rules."""

        def __init__(self, client: httpx.Client) -> None:
            self._client = client

        def __call__(
            self,
            url: str,
            method: str = "GET",
            body: bytes | None = None,
            headers: Mapping[str, str] | None = None,
            timeout: float | None = None,
            **kwargs: Any,
        ) -> Response:
            parts = urlsplit(url)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and is_loopback_host(parts.hostname)
            ):
                raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                    f"refusing to fetch a token over {parts.scheme}:// from {parts.hostname}"
                )
            try:
                resp = self._client.request(
                    method,
                    url,
                    content=body,
                    headers=dict(headers or {}),
                    timeout=timeout if timeout is not None else 10.0,
                )
            except httpx.HTTPError as exc:
                raise google.auth.exceptions.TransportError(type(exc).__name__) from None  # type: ignore[no-untyped-call]
            return Response(resp)

    return Request


_TOKEN_REQUEST: type | None = None


def _token_request(client: httpx.Client) -> Any:
    global _TOKEN_REQUEST
    if _TOKEN_REQUEST is None:
        _TOKEN_REQUEST = _token_request_class()
    return _TOKEN_REQUEST(client)


class _VertexMixin(RemoteDestination):
    """What every Vertex publisher shares: the URL, the bearer token, the error mapping."""

    kind: str = DestinationKind.VERTEX

    def __init__(
        self,
        config: DestinationConfig,
        *,
        credentials: GoogleCredentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            import google.auth  # noqa: F401  (the optional extra must be there)
        except ImportError:
            raise ValueError(
                f"destination {config.name!r} (vertex) needs google-auth: "
                "pip install 'onbox[vertex]'"
            ) from None
        if not (config.project and config.location and config.model):
            raise ValueError(
                f"destination {config.name!r} (vertex) needs project, location and model"
            )
        endpoint = config.base_url or vertex_endpoint(config.location)
        super().__init__(replace(config, base_url=endpoint), api_key=None, transport=transport)
        self.publisher = publisher_of(config)
        # Tokens come from Google's own endpoint (or the credential file's token_uri),
        # verified against the system store: a private CA for a PSC endpoint is not theirs.
        self._google = credentials or GoogleCredentials(config.name, proxy=config.proxy)

    def describe(self) -> dict[str, Any]:
        """As for every remote destination, plus project, location and publisher."""
        return {
            **super().describe(),
            "project": self.config.project,
            "location": self.config.location,
            "publisher": self.publisher,
        }

    def close(self) -> None:
        """Close pooled connections, the token client's too."""
        super().close()
        self._google.close()

    def _url(self, method: str) -> str:
        c = self.config
        base = (c.base_url or "").rstrip("/")
        model = quote(c.model or "", safe="@.-_")
        return (
            f"{base}/v1/projects/{quote(c.project or '', safe='')}/locations/"
            f"{quote(c.location or '', safe='')}/publishers/{self.publisher}/models/{model}:{method}"
        )

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._google.token()}"}

    def _raise_for_status(self, resp: httpx.Response) -> None:
        raise self._status_error(resp)

    def _status_error(self, resp: httpx.Response) -> DestinationError:
        status = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        try:
            error = json.loads(resp.read()).get("error")
            reason = str(error.get("status") or error.get("type") or "")
        except (ValueError, AttributeError, httpx.HTTPError):
            reason = ""
        what = f"HTTP {status}{f' {reason}' if reason else ''}"
        if status == 429:
            wait = f"{retry_after:g}s" if retry_after is not None else "a pause"
            return DestinationUnavailable(
                f"destination {self.name} is over quota ({what}); retrying after {wait}",
                retry_after=retry_after,
            )
        if status == 401:
            self._google.reset()
            return DestinationUnavailable(
                f"destination {self.name} refused the access token ({what}); it is fetched "
                "again on the next request — if this repeats, run `gcloud auth "
                "application-default login`"
            )
        if status == 403:
            return DestinationUnavailable(
                f"destination {self.name}: permission denied ({what}); the credentials need "
                f"aiplatform.endpoints.predict on project {self.config.project}"
            )
        if status >= 500:
            return DestinationUnavailable(
                f"destination {self.name} failed with {what}", retry_after=retry_after
            )
        return DestinationProtocolError(
            f"destination {self.name} rejected the request ({what}); check its model, "
            "project and location in the policy"
        )


class VertexGeminiDestination(_VertexMixin):
    """Gemini through ``generateContent`` / ``streamGenerateContent`` (``publisher = google``)."""

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The ``GenerateContentRequest`` for the hole-filling prompt."""
        max_tokens = request.max_tokens
        if self.config.max_tokens:
            max_tokens = min(max_tokens, self.config.max_tokens)
        generation: dict[str, Any] = {
            "maxOutputTokens": max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            generation["stopSequences"] = list(request.stop)[:5]
        payload = {
            "contents": [{"role": "user", "parts": [{"text": hole_filling_prompt(request)}]}],
            "systemInstruction": {"parts": [{"text": CHAT_SYSTEM}]},
            "generationConfig": generation,
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if self.config.stream:
            url, accept = self._url("streamGenerateContent") + "?alt=sse", "text/event-stream"
        else:
            url, accept = self._url("generateContent"), "application/json"
        return PreparedRequest(
            url, body, {"Content-Type": "application/json", "Accept": accept}, True
        )

    def _on_event(self, event: Mapping[str, Any], state: StreamState) -> str:
        if "error" in event:
            raise DestinationProtocolError(f"destination {self.name} reported an error mid-stream")
        return "".join(self._fold(event, state))

    def _on_body(self, body: Mapping[str, Any], state: StreamState) -> None:
        state.parts.extend(self._fold(body, state))

    def _fold(self, chunk: Mapping[str, Any], state: StreamState) -> list[str]:
        if isinstance(chunk.get("modelVersion"), str):
            state.model = chunk["modelVersion"]
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            state.tokens_in = int(usage.get("promptTokenCount") or state.tokens_in)
            state.tokens_out = int(usage.get("candidatesTokenCount") or state.tokens_out)
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise DestinationProtocolError(
                f"destination {self.name} blocked the prompt ({feedback['blockReason']})"
            )
        candidates = chunk.get("candidates")
        if candidates is None and isinstance(usage, dict):
            return []  # a usage-only chunk
        if not isinstance(candidates, list) or not candidates:
            raise DestinationProtocolError(f"destination {self.name} answered without candidates")
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise DestinationProtocolError(f"destination {self.name} sent a malformed candidate")
        if candidate.get("finishReason"):
            state.finish_reason = _GEMINI_STOPS.get(str(candidate["finishReason"]), "stop")
        content = candidate.get("content")
        parts = content.get("parts", []) if isinstance(content, dict) else []
        texts: list[str] = []
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and "text" in part and not part.get("thought"):
                if not isinstance(part["text"], str):
                    raise DestinationProtocolError(
                        f"destination {self.name} sent text that is not a string"
                    )
                texts.append(part["text"])
        return texts

    def _finish_text(self, text: str, prepared: PreparedRequest) -> str:
        return unwrap_chat_answer(text)


class VertexAnthropicDestination(_VertexMixin, AnthropicDestination):
    """Claude on Vertex through ``rawPredict`` / ``streamRawPredict`` (``publisher = anthropic``)."""

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The Messages API body, with the model in the URL and Vertex's API version."""
        prepared = AnthropicDestination.prepare(self, request)
        payload = json.loads(prepared.body)
        del payload["model"]
        payload["anthropic_version"] = ANTHROPIC_VERTEX_VERSION
        payload["stream"] = self.config.stream
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        method = "streamRawPredict" if self.config.stream else "rawPredict"
        accept = "text/event-stream" if self.config.stream else "application/json"
        return PreparedRequest(
            self._url(method), body, {"Content-Type": "application/json", "Accept": accept}, True
        )


class VertexCodestralDestination(_VertexMixin, OpenAIDestination):
    """Codestral fill-in-the-middle on Vertex (``publisher = mistralai``)."""

    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The FIM body (prompt and suffix) for ``rawPredict`` / ``streamRawPredict``."""
        max_tokens = request.max_tokens
        if self.config.max_tokens:
            max_tokens = min(max_tokens, self.config.max_tokens)
        payload: dict[str, Any] = {
            "model": self.config.model,
            "prompt": render_context(request, comment_prefix(request.language)) + request.prefix,
            "suffix": request.suffix,
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "stream": self.config.stream,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        method = "streamRawPredict" if self.config.stream else "rawPredict"
        accept = "text/event-stream" if self.config.stream else "application/json"
        return PreparedRequest(
            self._url(method), body, {"Content-Type": "application/json", "Accept": accept}, False
        )


def vertex_destination(
    config: DestinationConfig,
    *,
    credentials: GoogleCredentials | None = None,
    transport: httpx.BaseTransport | None = None,
) -> RemoteDestination:
    """The Vertex destination for ``config``'s publisher."""
    classes: dict[str, type[_VertexMixin]] = {
        "google": VertexGeminiDestination,
        "anthropic": VertexAnthropicDestination,
        "mistralai": VertexCodestralDestination,
    }
    cls = classes.get(publisher_of(config))
    if cls is None:
        raise ValueError(f"destination {config.name!r}: unknown Vertex publisher")
    return cls(config, credentials=credentials, transport=transport)
