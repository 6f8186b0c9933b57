"""The ``bedrock`` destination kind: Amazon Bedrock's Converse and ConverseStream APIs.

One request shape for every model Bedrock hosts (Anthropic, Meta, Mistral, Amazon…)::

    POST {endpoint}/model/{modelId}/converse-stream     (stream = true, the default)
    POST {endpoint}/model/{modelId}/converse            (stream = false)

``endpoint`` is ``https://bedrock-runtime.{region}.amazonaws.com``, or the policy's
``base_url`` (a VPC interface endpoint); ``region`` is also the SigV4 signing scope.
The stream answers in AWS event-stream framing (:mod:`onbox.inference.eventstream`,
every message CRC-checked) with ``messageStart``, ``contentBlockDelta``,
``messageStop`` and ``metadata`` events, or an ``exception`` message.

Signing is botocore's SigV4 signer, and credentials come from botocore's own resolver
for the policy's ``profile`` (or the default one): environment variables, the shared
``config``/``credentials`` files, SSO (the ``aws sso login`` cache), web identity,
``credential_process``, container and instance roles. botocore is what the AWS CLI and
boto3 sign with, so a machine that works with ``aws bedrock-runtime converse`` works
here; it is the optional extra ``onbox[bedrock]``. A smaller SigV4 package would sign as
well, but none resolves credentials the way AWS users expect (SSO, profiles with
``source_profile``, container and instance roles), and botocore is maintained by AWS;
only its signer and credential chain are used, not its clients. Credentials are resolved at send
time (refreshable ones refresh themselves), are never part of :meth:`describe`, the
journal, logs or error messages.

Errors are those of :mod:`onbox.inference.remote`; the service's error types map as:

=========================================  ======================================
``ThrottlingException`` (429), 503, 5xx    :class:`DestinationUnavailable` (retry_after)
``ExpiredTokenException``, 403, no creds   :class:`DestinationUnavailable` (what to renew)
``ModelTimeoutException`` (408), stall     :class:`DestinationTimeout`
other 4xx, bad CRC, malformed events       :class:`DestinationProtocolError`
=========================================  ======================================

Every one of them makes routing fall back along the label's route (and, last, on-box).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from onbox.classification.policy_model import DestinationConfig
from onbox.inference.destination import CancelToken, CompletionRequest, DestinationKind
from onbox.inference.errors import (
    Cancelled,
    DestinationError,
    DestinationProtocolError,
    DestinationTimeout,
    DestinationUnavailable,
)
from onbox.inference.eventstream import EventMessage, EventStreamDecoder, EventStreamError

from .remote import (
    CHAT_SYSTEM,
    DeltaCallback,
    PreparedRequest,
    RemoteDestination,
    StreamState,
    hole_filling_prompt,
    parse_retry_after,
    unwrap_chat_answer,
)

logger = logging.getLogger(__name__)

SIGNING_SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
_EXPIRED = {"ExpiredTokenException", "ExpiredToken", "RequestExpired"}
_RETRYABLE_STREAM = {
    "throttlingException",
    "serviceUnavailableException",
    "internalServerException",
    "modelStreamErrorException",
}


class AwsCredentials:
    """botocore's credential chain for one profile, resolved lazily and on demand again.

    ``resolve()`` returns botocore's frozen credentials (access key, secret, token);
    after the service says they expired, :meth:`reset` makes the next call resolve the
    chain again, so ``aws sso login`` in a terminal is picked up without a restart.
    """

    def __init__(self, profile: str | None, destination: str) -> None:
        self._profile = profile
        self._destination = destination
        self._lock = threading.Lock()
        self._credentials: Any = None

    def resolve(self) -> Any:
        """Current credentials; raise :class:`DestinationUnavailable` saying what to set up."""
        import botocore.session

        where = f"profile {self._profile}" if self._profile else "the default AWS profile"
        with self._lock:
            try:
                if self._credentials is None:
                    session = botocore.session.Session(profile=self._profile)
                    self._credentials = session.get_credentials()
                if self._credentials is None:
                    raise DestinationUnavailable(
                        f"destination {self._destination}: no AWS credentials for {where}; "
                        "set AWS_PROFILE or AWS_ACCESS_KEY_ID, run `aws sso login`, or run "
                        "where an instance or container role is attached"
                    )
                return self._credentials.get_frozen_credentials()
            except DestinationUnavailable:
                raise
            except Exception as exc:  # any failure of the chain: files, SSO, STS, IMDS
                self._credentials = None
                # The exception names the profile, file or STS/SSO call at fault, never a
                # secret (a ClientError comes from assuming a role for the profile).
                raise DestinationUnavailable(
                    f"destination {self._destination}: AWS credentials for {where} are not "
                    f"usable ({type(exc).__name__}: {exc}); renew them (e.g. `aws sso login`)"
                ) from None

    def reset(self) -> None:
        """Forget the resolved credentials; the next :meth:`resolve` walks the chain again."""
        with self._lock:
            self._credentials = None


class BedrockDestination(RemoteDestination):
    """Amazon Bedrock's Converse API (``kind = "bedrock"`` in the policy)."""

    kind: str = DestinationKind.BEDROCK

    def __init__(
        self,
        config: DestinationConfig,
        *,
        credentials: AwsCredentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            import botocore.auth  # noqa: F401  (the optional extra must be there)
        except ImportError:
            raise ValueError(
                f"destination {config.name!r} (bedrock) needs botocore: "
                "pip install 'onbox[bedrock]'"
            ) from None
        if not config.region or not config.model:
            raise ValueError(f"destination {config.name!r} (bedrock) needs region and model")
        endpoint = config.base_url or f"https://bedrock-runtime.{config.region}.amazonaws.com"
        super().__init__(replace(config, base_url=endpoint), api_key=None, transport=transport)
        self.region = config.region
        self._credentials = credentials or AwsCredentials(config.profile, config.name)

    def describe(self) -> dict[str, Any]:
        """As for every remote destination, plus the region (never the credentials)."""
        return {**super().describe(), "region": self.region}

    # -- the request ---------------------------------------------------------------
    def prepare(self, request: CompletionRequest) -> PreparedRequest:
        """The Converse body for the hole-filling prompt."""
        base = (self.config.base_url or "").rstrip("/")
        action = "converse-stream" if self.config.stream else "converse"
        # Model ids and ARNs hold ':' and '/'; the path carries them percent-encoded.
        url = f"{base}/model/{quote(self.config.model or '', safe='')}/{action}"
        max_tokens = request.max_tokens
        if self.config.max_tokens:
            max_tokens = min(max_tokens, self.config.max_tokens)
        inference: dict[str, Any] = {"maxTokens": max_tokens, "temperature": request.temperature}
        if request.stop:
            inference["stopSequences"] = list(request.stop)[:4]
        payload = {
            "messages": [{"role": "user", "content": [{"text": hole_filling_prompt(request)}]}],
            "system": [{"text": CHAT_SYSTEM}],
            "inferenceConfig": inference,
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        accept = EVENT_STREAM if self.config.stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept}
        return PreparedRequest(url, body, headers, chat=True)

    def _auth_headers_for(self, prepared: PreparedRequest) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials.resolve()
        signed = AWSRequest(
            method="POST", url=prepared.url, data=prepared.body, headers=dict(prepared.headers)
        )
        SigV4Auth(credentials, SIGNING_SERVICE, self.region).add_auth(signed)
        names = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        return {name: signed.headers[name] for name in names if name in signed.headers}

    # -- the answer ----------------------------------------------------------------
    def _streams(self, resp: httpx.Response) -> bool:
        return str(resp.headers.get("content-type", "")).startswith(EVENT_STREAM)

    def _read_stream(
        self,
        resp: httpx.Response,
        state: StreamState,
        cancel: CancelToken,
        started: float,
        on_delta: DeltaCallback | None,
    ) -> int:
        deadline = started + 2 * self._timeout
        decoder = EventStreamDecoder()
        received = 0
        try:
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if cancel.cancelled:
                    raise Cancelled(cancel.reason or "cancelled")
                if time.perf_counter() > deadline:
                    raise DestinationTimeout(
                        f"destination {self.name} streamed for more than "
                        f"{2 * self._timeout:g}s; raise its timeout in the policy if answers "
                        "are long"
                    )
                for message in decoder.feed(chunk):
                    delta = self._on_message(message, state)
                    if delta:
                        state.parts.append(delta)
                        if on_delta is not None:
                            on_delta(delta)
            decoder.finish()
            if not state.done:
                raise DestinationProtocolError(
                    f"destination {self.name} ended the stream before messageStop"
                )
        except EventStreamError as exc:
            raise DestinationProtocolError(f"destination {self.name}: {exc}") from None
        return received

    def _on_message(self, message: EventMessage, state: StreamState) -> str:
        kind = message.header(":message-type")
        if kind == "exception":
            raise self._stream_exception(message.header(":exception-type"))
        if kind == "error":
            raise DestinationUnavailable(
                f"destination {self.name} reported {message.header(':error-code') or 'an error'} "
                "mid-stream"
            )
        event = _json(message.payload, self.name)
        match message.header(":event-type"):
            case "contentBlockDelta":
                delta = event.get("delta")
                if not isinstance(delta, dict):
                    raise DestinationProtocolError(f"destination {self.name} sent a bad delta")
                return _text(delta.get("text", ""), self.name)
            case "messageStop":
                state.finish_reason = _STOP_REASONS.get(str(event.get("stopReason")), "stop")
                state.done = True  # the usage in "metadata" may still follow
            case "metadata":
                self._usage(event, state)
            case "":
                raise DestinationProtocolError(f"destination {self.name} sent an untyped event")
        return ""  # messageStart, contentBlockStart/Stop and event types yet to come

    def _stream_exception(self, exception_type: str) -> DestinationError:
        what = exception_type or "an exception"
        if exception_type in _RETRYABLE_STREAM:
            return DestinationUnavailable(f"destination {self.name} reported {what} mid-stream")
        if exception_type == "modelTimeoutException":
            return DestinationTimeout(f"destination {self.name}: the model timed out mid-stream")
        return DestinationProtocolError(f"destination {self.name} reported {what} mid-stream")

    def _on_body(self, body: Mapping[str, Any], state: StreamState) -> None:
        output = body.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise DestinationProtocolError(f"destination {self.name} answered without content")
        for block in content:
            if isinstance(block, dict) and "text" in block:
                state.parts.append(_text(block["text"], self.name))
        state.finish_reason = _STOP_REASONS.get(str(body.get("stopReason")), "stop")
        self._usage(body, state)

    def _usage(self, event: Mapping[str, Any], state: StreamState) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict):
            state.tokens_in = int(usage.get("inputTokens") or state.tokens_in)
            state.tokens_out = int(usage.get("outputTokens") or state.tokens_out)

    def _finish_text(self, text: str, prepared: PreparedRequest) -> str:
        return unwrap_chat_answer(text)

    def _raise_for_status(self, resp: httpx.Response) -> None:
        status = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        error_type = resp.headers.get("x-amzn-errortype", "").split(":", 1)[0]
        try:
            raw = resp.read()
        except httpx.HTTPError:
            raw = b""
        if not error_type:
            try:
                parsed = json.loads(raw)
                error_type = str(parsed.get("__type", "")).rsplit("#", 1)[-1]
            except (ValueError, AttributeError):
                pass
        what = f"HTTP {status}{f' {error_type}' if error_type else ''}"
        if status == 429 or error_type == "ThrottlingException":
            wait = f"{retry_after:g}s" if retry_after is not None else "a pause"
            raise DestinationUnavailable(
                f"destination {self.name} is throttling ({what}); retrying after {wait}",
                retry_after=retry_after,
            )
        if error_type in _EXPIRED:
            self._credentials.reset()
            raise DestinationUnavailable(
                f"destination {self.name}: the AWS credentials have expired ({what}); renew "
                "them (`aws sso login`, or refresh the role) — completions go on-box meanwhile"
            )
        if status in (401, 403):
            raise DestinationUnavailable(
                f"destination {self.name} refused the signed request ({what}); check that the "
                f"credentials may call bedrock:InvokeModel on {self.config.model} in "
                f"{self.region}, and the machine's clock"
            )
        if status == 408 or error_type == "ModelTimeoutException":
            raise DestinationTimeout(f"destination {self.name}: the model timed out ({what})")
        if status >= 500:
            raise DestinationUnavailable(
                f"destination {self.name} failed with {what}", retry_after=retry_after
            )
        if status == 404:
            raise DestinationProtocolError(
                f"destination {self.name}: model {self.config.model} not found in "
                f"{self.region} ({what}); check the model id and that access is granted"
            )
        raise DestinationProtocolError(
            f"destination {self.name} rejected the request ({what}); check its model and region"
        )


def _json(raw: bytes, name: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise DestinationProtocolError(f"destination {name} streamed invalid JSON") from None
    if not isinstance(value, dict):
        raise DestinationProtocolError(f"destination {name} streamed JSON of the wrong shape")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise DestinationProtocolError(f"destination {name} sent text that is not a string")
    return value
