"""Destinations other than on-box: what every HTTP engine shares.

:class:`RemoteDestination` sends one prepared request over httpx — TLS verification
always on (the system store, or the policy's ``ca_bundle``), the policy's proxy and
extra headers, no proxy from the environment and no redirects followed — and reads the
answer as a server-sent event stream when the service streams, so that a cancelled
request closes its connection mid-stream. The wire formats live in
:mod:`onbox.inference.openai_compat` (OpenAI, Azure OpenAI, vLLM, llama.cpp, Ollama,
LM Studio), :mod:`onbox.inference.anthropic` (the Messages API),
:mod:`onbox.inference.bedrock` (Converse, SigV4) and :mod:`onbox.inference.vertex`
(Gemini, Claude and Codestral on Vertex AI).
:func:`build_destinations` turns a policy into destinations.

A request is sent in two steps so that routing can journal exactly what will leave
before the first byte does: :meth:`RemoteDestination.prepare` renders the body and its
SHA-256, :meth:`RemoteDestination.send` transmits it. API keys come from the environment
variable or keyring entry the policy names; they are added to the headers at send time
and never appear in :meth:`~RemoteDestination.describe`, logs, errors or the journal.

Only TLS leaves the machine: :func:`destination_refusal` refuses a ``base_url`` that is
not ``https://`` unless every host the plain text would reach (the endpoint, and the
proxy if one is set) is this machine's loopback (127.0.0.0/8, ``::1``, ``localhost``) or
the signed policy sets ``allow_plain_http = true`` for that destination — and even then
an API key never travels over plain http to a host other than loopback. Such a
destination is not built (:func:`build_destinations` leaves it out with the reason),
``onbox policy check`` rejects it, and :meth:`RemoteDestination.send` checks the request
URL once more before the first byte. A redirect is never followed, so an ``https://``
endpoint cannot hand the request on to ``http://``.

Errors (from :mod:`onbox.inference.errors`)::

    InferenceError
    ├── Cancelled                  the token was set; the connection was closed
    └── DestinationError           routing falls back along the label's list
        ├── DestinationTimeout        connect/read timeout, stalled body, deadline passed
        ├── DestinationUnavailable    refused, TLS, 401/403, 429 and 5xx (with retry_after)
        └── DestinationProtocolError  invalid JSON or an answer of the wrong shape
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from onbox.classification.policy_model import DestinationConfig, Policy
from onbox.inference.destination import (
    CancelToken,
    Completion,
    CompletionRequest,
    Destination,
    DestinationKind,
)
from onbox.inference.errors import (
    Cancelled,
    DestinationError,
    DestinationProtocolError,
    DestinationTimeout,
    DestinationUnavailable,
)

logger = logging.getLogger(__name__)

#: ``on_delta(text)`` receives each piece of text as it streams in.
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class PreparedRequest:
    """Exactly what :meth:`RemoteDestination.send` will transmit, minus the credentials."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    chat: bool = False  # the answer is a chat reply to be unwrapped, not raw FIM text

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the body; the journal records it before the body is sent."""
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class StreamState:
    """Pieces of an answer collected while it streams in."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    done: bool = False


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (as a URL names it, without brackets) is this machine's loopback.

    Only ``localhost`` itself, 127.0.0.0/8 and ``::1`` count: ``127.0.0.1.evil.com``,
    ``localhost.evil.com`` and other names that merely start like one do not.
    """
    if not host:
        return False
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cleartext_refusal(
    config: DestinationConfig, scheme: str, host: str | None, *, with_key: bool
) -> str | None:
    """Why a request to ``scheme://host`` must not be sent for ``config`` (None: it may)."""
    if scheme == "https":
        return None
    if scheme != "http" or not host:
        return "base_url must be an https:// URL"
    # Plain http reaches the endpoint in clear, and the proxy too when there is one.
    hops = [host]
    if config.proxy:
        hops.append(urlsplit(config.proxy).hostname or "the proxy")
    remote = [h for h in hops if not is_loopback_host(h)]
    if not remote:
        return None
    where = " and ".join(dict.fromkeys(remote))
    if not config.allow_plain_http:
        return (
            f"plain http:// to {where} is refused: code and the API key would travel in "
            "clear; use https://, or, if that network is trusted, set allow_plain_http = true "
            f"in [destinations.{config.name}] of the signed policy"
        )
    if with_key:
        return (
            f"its API key would travel in clear over plain http:// to {where}; use https:// "
            "(allow_plain_http = true never covers an API key)"
        )
    return None


def destination_refusal(config: DestinationConfig) -> str | None:
    """Why the policy's destination ``config`` may not be used, or None when it may.

    A ``base_url`` that is not ``https://`` is refused unless it (and the proxy, if set)
    is loopback, or the policy sets ``allow_plain_http = true`` for this destination and
    names no API key for it. ``onbox policy check`` reports the same reason.
    """
    if config.kind == DestinationKind.LLAMA_CPP or not config.base_url:
        return None
    try:
        parts = urlsplit(config.base_url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return "base_url is not a valid URL (check its host and port); use an https:// URL"
    if any(c.isspace() or c == "\\" for c in parts.netloc):
        return "base_url has a space or backslash in its host; use an https:// URL"
    refusal = _cleartext_refusal(
        config,
        parts.scheme.lower(),
        host,
        with_key=bool(config.api_key_env or config.api_key_keyring),
    )
    if refusal is not None and parts.scheme.lower() not in ("http", "https"):
        return f"{refusal}, not {_without_userinfo(config.base_url)!r}"
    return refusal


def resolve_api_key(config: DestinationConfig) -> str | None:
    """The API key from ``api_key_env`` or ``api_key_keyring`` ("service:user"), if set."""
    if config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if value:
            return value
    if config.api_key_keyring:
        service, _, user = config.api_key_keyring.partition(":")
        try:
            import keyring  # optional dependency: onbox[keyring]
        except ImportError:
            logger.warning(
                "destination %s names keyring entry %s but the keyring package is not "
                "installed; pip install 'onbox[keyring]'",
                config.name,
                config.api_key_keyring,
            )
            return None
        try:
            value = keyring.get_password(service, user)
        except Exception as exc:  # any backend failure means "no key"
            logger.warning(
                "keyring lookup for destination %s failed: %s", config.name, type(exc).__name__
            )
            return None
        return value or None
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _CancelWatcher:
    """One daemon thread that shuts the socket of any streaming request whose token is set.

    A read blocked on a stalled server does not notice a cancel flag by itself;
    shutting the socket down wakes it at once.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self._interval = interval
        self._cond = threading.Condition()
        self._active: dict[int, tuple[CancelToken, httpx.Response]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None

    def watch(self, token: CancelToken, response: httpx.Response) -> int:
        with self._cond:
            self._next += 1
            self._active[self._next] = (token, response)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="onbox-cancel", daemon=True)
                self._thread.start()
            if len(self._active) == 1:
                self._cond.notify()  # wake the poller only when it was idle
            return self._next

    def unwatch(self, key: int) -> None:
        with self._cond:
            self._active.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._active:
                    self._cond.wait()
            time.sleep(self._interval)
            with self._cond:
                fired = [(k, r) for k, (t, r) in self._active.items() if t.cancelled]
                for key, _ in fired:
                    del self._active[key]
            for _, response in fired:
                _shutdown(response)


def _shutdown(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        try:
            # Plain socket shutdown, also for an SSLSocket: wake the reader, then let
            # httpx close the connection on its way out.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


_WATCHER = _CancelWatcher()


class RemoteDestination:
    """Base of the HTTP destinations; subclasses render requests and parse answers."""

    kind: str = "remote"  # each subclass names its DestinationKind

    def __init__(
        self,
        config: DestinationConfig,
        *,
        api_key: str | None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not config.base_url:
            raise ValueError(f"destination {config.name!r} needs base_url in the policy")
        refusal = destination_refusal(config)
        if refusal is not None:
            raise ValueError(f"destination {config.name!r} refused: {refusal}")
        self.name = config.name
        self.clearance = config.clearance.name
        self.config = config
        self._api_key = api_key
        self._timeout = float(config.timeout)
        verify: ssl.SSLContext | bool = True
        if config.ca_bundle:
            verify = ssl.create_default_context(cafile=config.ca_bundle)
        self._client = httpx.Client(
            verify=verify,
            proxy=config.proxy or None,
            timeout=httpx.Timeout(self._timeout),
            headers=dict(config.headers or {}),
            trust_env=False,  # only the policy's proxy; never one from the environment
            follow_redirects=False,  # a redirect could lead to http:// or another host
            transport=transport,
        )

    def __repr__(self) -> str:
        endpoint = _without_userinfo(self.config.base_url or "")
        return f"{type(self).__name__}(name={self.name!r}, base_url={endpoint!r})"

    # What subclasses provide -------------------------------------------------------
    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """Render ``request`` into the exact body to send."""
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _on_event(self, event: Mapping[str, Any], state: StreamState) -> str:
        """Fold one streamed event into ``state``; return its text delta."""
        raise NotImplementedError

    def _on_body(self, body: Mapping[str, Any], state: StreamState) -> None:
        """Fold a non-streamed JSON answer into ``state``."""
        raise NotImplementedError

    def _finish_text(self, text: str, prepared: PreparedRequest) -> str:
        return text

    def _auth_headers_for(self, prepared: PreparedRequest) -> dict[str, str]:
        """Credentials for ``prepared``; a signing scheme (SigV4) needs the request itself."""
        return self._auth_headers()

    def _streams(self, resp: httpx.Response) -> bool:
        """Whether ``resp`` is a stream for :meth:`_read_stream` rather than one JSON body."""
        return "text/event-stream" in resp.headers.get("content-type", "")

    # The shared part ---------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Name, kind, endpoint, model and clearance (never the key)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "endpoint": _without_userinfo(self.config.base_url or ""),
            "model": self.config.model,
            "clearance": self.clearance,
            "fim": bool(self.config.fim),
            "proxy": bool(self.config.proxy),
        }

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def __enter__(self) -> RemoteDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(
        self,
        request: CompletionRequest,
        cancel: CancelToken,
        *,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        """Prepare and send ``request`` (routing calls the two steps itself)."""
        return self.send(self.prepare(request), cancel, on_delta=on_delta)

    def send(
        self,
        prepared: PreparedRequest,
        cancel: CancelToken,
        *,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        """Transmit ``prepared`` and collect the answer; stop promptly once ``cancel`` is set."""
        if cancel.cancelled:
            raise Cancelled(cancel.reason or "cancelled")
        if self._api_key is None and (self.config.api_key_env or self.config.api_key_keyring):
            where = self.config.api_key_env or self.config.api_key_keyring
            raise DestinationUnavailable(
                f"destination {self.name}: no API key in {where}; set it and restart the server"
            )
        started = time.perf_counter()
        state = StreamState(model=self.config.model or "")
        received = 0
        first_byte = 0.0
        auth = self._auth_headers_for(prepared)
        headers = {**prepared.headers, **auth}
        try:
            url = httpx.URL(prepared.url)
        except httpx.InvalidURL:
            raise DestinationProtocolError(
                f"destination {self.name}: base_url is not a valid URL; nothing sent"
            ) from None
        refusal = _cleartext_refusal(self.config, url.scheme, url.host, with_key=bool(auth))
        if refusal is not None:  # the policy was checked when built; this is the last word
            raise DestinationUnavailable(f"destination {self.name}: nothing sent: {refusal}")
        try:
            with self._client.stream(
                "POST", prepared.url, content=prepared.body, headers=headers
            ) as resp:
                first_byte = time.perf_counter() - started
                if 300 <= resp.status_code < 400:
                    self._refuse_redirect(resp)
                if resp.status_code >= 400:
                    self._raise_for_status(resp)
                key = _WATCHER.watch(cancel, resp)
                try:
                    if self._streams(resp):
                        received = self._read_stream(resp, state, cancel, started, on_delta)
                    else:
                        raw = resp.read()
                        received = len(raw)
                        self._on_body(_loads(raw, self.name), state)
                finally:
                    _WATCHER.unwatch(key)
        except (Cancelled, DestinationError):
            raise
        except httpx.TimeoutException as exc:
            raise DestinationTimeout(
                f"destination {self.name} did not answer within {self._timeout:g}s "
                f"({type(exc).__name__}); it is skipped for a while"
            ) from None
        except httpx.HTTPError as exc:
            if cancel.cancelled:
                raise Cancelled(cancel.reason or "cancelled") from None
            raise _transport_error(self.name, exc) from None
        except OSError as exc:
            if cancel.cancelled:
                raise Cancelled(cancel.reason or "cancelled") from None
            raise DestinationUnavailable(f"destination {self.name}: {exc}") from None
        if cancel.cancelled:
            raise Cancelled(cancel.reason or "cancelled")
        text = self._finish_text("".join(state.parts), prepared)
        return Completion(
            text=text,
            model=state.model or (self.config.model or ""),
            finish_reason=state.finish_reason,
            prompt_sha256=prepared.sha256,
            tokens_in=state.tokens_in,
            tokens_out=state.tokens_out,
            bytes_sent=len(prepared.body),
            bytes_received=received,
            timings={"first_byte": first_byte, "total": time.perf_counter() - started},
        )

    def _read_stream(
        self,
        resp: httpx.Response,
        state: StreamState,
        cancel: CancelToken,
        started: float,
        on_delta: DeltaCallback | None,
    ) -> int:
        deadline = started + 2 * self._timeout
        received = 0
        for line in resp.iter_lines():
            received += len(line) + 1
            if cancel.cancelled:
                raise Cancelled(cancel.reason or "cancelled")
            if time.perf_counter() > deadline:
                raise DestinationTimeout(
                    f"destination {self.name} streamed for more than {2 * self._timeout:g}s; "
                    "raise its timeout in the policy if answers are long"
                )
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                state.done = True
                break
            delta = self._on_event(_loads(data.encode(), self.name), state)
            if delta:
                state.parts.append(delta)
                if on_delta is not None:
                    on_delta(delta)
            if state.done:
                break
        return received

    def _refuse_redirect(self, resp: httpx.Response) -> None:
        location = urlsplit(resp.headers.get("location", ""))
        target = f" to {location.scheme}://{location.hostname}" if location.hostname else ""
        raise DestinationProtocolError(
            f"destination {self.name} answered with a redirect (HTTP {resp.status_code}{target}); "
            "redirects are never followed: set base_url in the policy to the final https:// URL"
        )

    def _raise_for_status(self, resp: httpx.Response) -> None:
        status = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        try:
            resp.read()
        except httpx.HTTPError:
            pass
        if status == 429:
            raise DestinationUnavailable(
                f"destination {self.name} is rate-limiting (429); retrying after "
                f"{retry_after if retry_after is not None else 'a pause'}s",
                retry_after=retry_after,
            )
        if status in (401, 403):
            raise DestinationUnavailable(
                f"destination {self.name} refused the API key ({status}); check "
                f"{self.config.api_key_env or self.config.api_key_keyring or 'its key'}"
            )
        if status >= 500:
            raise DestinationUnavailable(
                f"destination {self.name} failed with HTTP {status}", retry_after=retry_after
            )
        raise DestinationProtocolError(
            f"destination {self.name} rejected the request with HTTP {status}; check its "
            "base_url, model and api_version in the policy"
        )


def _without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``, so an endpoint never carries a credential."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _loads(raw: bytes, name: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise DestinationProtocolError(
            f"destination {name} answered with invalid JSON; is base_url an API endpoint?"
        ) from None
    if not isinstance(value, dict):
        raise DestinationProtocolError(f"destination {name} answered with JSON of the wrong shape")
    return value


def _transport_error(name: str, exc: httpx.HTTPError) -> DestinationError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return DestinationUnavailable(
                f"destination {name}: TLS certificate did not verify ({cause.verify_message}); "
                "if it uses a private CA, set ca_bundle in the policy"
            )
        if isinstance(cause, ssl.SSLError):
            return DestinationUnavailable(f"destination {name}: TLS failed ({cause.reason})")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return DestinationUnavailable(
            f"destination {name} cannot be reached ({exc}); is the service running?"
        )
    return DestinationUnavailable(f"destination {name} broke off the answer ({type(exc).__name__})")


# -- prompts shared by chat-style services -------------------------------------------

HOLE = "<FILL_HERE>"
CHAT_SYSTEM = (
    "You are a code completion engine. The user shows a file with the marker "
    f"{HOLE} where the cursor is. Reply with only the code that belongs at the marker: "
    "no explanation, no code fences, nothing that is already before or after it."
)
_FENCE = re.compile(r"^\s*```[\w+#.-]*\n(.*?)\n?```\s*$", re.DOTALL)


def render_context(request: CompletionRequest, comment: str = "#") -> str:
    """Context snippets as a comment-headed preamble (empty when there are none)."""
    blocks = [f"{comment} file: {s.path}\n{s.text.rstrip()}\n" for s in request.context]
    return "\n".join(blocks) + ("\n" if blocks else "")


def hole_filling_prompt(request: CompletionRequest) -> str:
    """The user message of a chat-style hole-filling request."""
    lang = request.language or ""
    parts = []
    for snippet in request.context:
        parts.append(f"Another open file, {snippet.path}:\n```\n{snippet.text.rstrip()}\n```\n")
    where = f" {request.path}" if request.path else ""
    parts.append(
        f"Complete the file{where} at {HOLE}:\n```{lang}\n{request.prefix}{HOLE}{request.suffix}\n```"
    )
    return "\n".join(parts)


def unwrap_chat_answer(text: str) -> str:
    """Drop code fences and markers a chat model wraps its answer in."""
    match = _FENCE.match(text)
    if match:
        text = match.group(1)
    return text.replace(HOLE, "")


def comment_prefix(language: str | None) -> str:
    """The line-comment marker of ``language`` (``#`` when unknown)."""
    slashes = {
        "c",
        "cpp",
        "java",
        "javascript",
        "typescript",
        "go",
        "rust",
        "csharp",
        "kotlin",
        "swift",
    }
    return "//" if (language or "").lower() in slashes else "#"


def build_destinations(policy: Policy, on_box: Destination) -> dict[str, Destination]:
    """Every destination the policy configures; each ``llama-cpp`` entry is ``on_box``.

    A destination whose API key is missing is still built (it fails at send time, so
    routing falls back and ``onbox/status`` shows why); one that cannot be built at all
    (unknown kind, no base_url) or that :func:`destination_refusal` refuses (plain http
    to a host other than loopback) is left out with a warning, so nothing is ever sent
    to it; :func:`destination_refusal` gives the reason again for ``onbox explain``.
    """
    from onbox.inference.anthropic import AnthropicDestination
    from onbox.inference.bedrock import BedrockDestination
    from onbox.inference.openai_compat import OpenAIDestination
    from onbox.inference.vertex import vertex_destination

    built: dict[str, Destination] = {}
    for name, config in policy.destinations.items():
        refusal = destination_refusal(config)
        if refusal is not None:
            logger.error("destination %s refused, left out: %s", name, refusal)
            continue
        try:
            if config.kind == DestinationKind.LLAMA_CPP:
                built[name] = on_box
            elif config.kind == DestinationKind.OPENAI:
                built[name] = OpenAIDestination(config, api_key=resolve_api_key(config))
            elif config.kind == DestinationKind.ANTHROPIC:
                built[name] = AnthropicDestination(config, api_key=resolve_api_key(config))
            elif config.kind == DestinationKind.BEDROCK:
                built[name] = BedrockDestination(config)
            elif config.kind == DestinationKind.VERTEX:
                built[name] = vertex_destination(config)
            else:
                logger.warning("destination %s has unknown kind %r; left out", name, config.kind)
        except (ValueError, OSError) as exc:
            logger.warning("destination %s left out: %s", name, exc)
    return built
