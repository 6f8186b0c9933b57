"""A loopback stand-in for the Bedrock runtime that checks SigV4 the way the service does.

Every request is recorded first (what reached "the cloud"), then authenticated: the
``Authorization`` header is parsed, the access key looked up among the known test
credentials, the session token checked, the date checked for skew, and the signature
recomputed with botocore's signer from the request exactly as it arrived — method, path,
the signed headers, the body. Only then is a fault applied or an answer served:
``/model/{id}/converse`` answers JSON, ``/model/{id}/converse-stream`` answers AWS
event-stream frames (:func:`encode_message`)::

    with BedrockServer() as aws:
        aws.push(BedrockFault.THROTTLED, retry_after=3)
        ...
        assert aws.requests[-1].verified

Faults: ``OK``, ``STATUS_500``, ``THROTTLED`` (429 ThrottlingException + Retry-After),
``UNAVAILABLE`` (503), ``STALL`` (one delta, then nothing until released),
``THROTTLED_MIDSTREAM`` (an ``exception`` frame after the first delta), ``BAD_CRC`` (a
frame with a flipped payload bit), ``VALIDATION`` (400).
"""

from __future__ import annotations

import enum
import hmac
import json
import re
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

ACCESS_KEY = "AKIDONBOXTEST0000000"
SECRET_KEY = "onbox/test/secret/key/never/logged/000000"
SESSION_TOKEN = "onbox-test-session-token"
EXPIRED_TOKEN = "onbox-test-expired-session-token"
REGION = "eu-west-1"
SSO_TOKEN = "onbox-test-sso-access-token"  # what `aws sso login` leaves in the cache

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


class BedrockFault(enum.Enum):
    """What the stand-in does with one authenticated request."""

    OK = "ok"
    STATUS_500 = "500"
    THROTTLED = "429"
    UNAVAILABLE = "503"
    STALL = "stall"
    THROTTLED_MIDSTREAM = "throttled-midstream"
    BAD_CRC = "bad-crc"
    VALIDATION = "400"


@dataclass(frozen=True)
class BedrockRequest:
    """One request as it arrived, and whether its signature verified."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    why: str  # the service's reason when not verified

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _State:
    requests: list[BedrockRequest] = field(default_factory=list)
    script: deque[tuple[BedrockFault, float | None]] = field(default_factory=deque)
    reply: str = "return sum(xs)\n"
    latency: float = 0.0
    usage: tuple[int, int] = (21, 5)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    secrets: dict[str, str] = field(default_factory=lambda: {ACCESS_KEY: SECRET_KEY})


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message with string headers and correct CRCs."""
    block = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        block += bytes([len(raw_name)]) + raw_name + b"\x07"
        block += struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message of ``event_type`` with a JSON payload."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(payload).encode(),
    )


def exception(exception_type: str, message: str) -> bytes:
    """An ``exception`` message, as Bedrock sends a mid-stream error."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real services stream: each event leaves at once
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        """The IAM Identity Center portal: role credentials for a cached SSO token."""
        if not self.path.startswith("/federation/credentials"):
            self._error(404, "NotFoundException", "no such operation")
        elif self.headers.get("x-amz-sso_bearer_token") != SSO_TOKEN:
            self._error(401, "UnauthorizedException", "Session token not found or invalid")
        else:
            expires = int((time.time() + 3600) * 1000)
            credentials = {
                "accessKeyId": ACCESS_KEY,
                "secretAccessKey": SECRET_KEY,
                "sessionToken": SESSION_TOKEN,
                "expiration": expires,
            }
            self._json(200, {"roleCredentials": credentials})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if body.startswith(b"Action=AssumeRole"):  # STS, as AWS_ENDPOINT_URL_STS points here
            self._sts_denied()
            return
        state = self.server.state
        verified, why, error = self._authenticate(body)
        with state.lock:
            state.requests.append(
                BedrockRequest(self.path, dict(self.headers.items()), body, verified, why)
            )
            fault, retry_after = state.script.popleft() if state.script else (BedrockFault.OK, None)
        if error is not None:
            self._error(*error)
            return
        match = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream)", self.path)
        if match is None:
            self._error(404, "UnknownOperationException", "no such operation")
            return
        if fault is BedrockFault.STATUS_500:
            self._error(500, "InternalServerException", "internal failure")
        elif fault is BedrockFault.THROTTLED:
            extra = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._error(429, "ThrottlingException", "Too many requests", extra)
        elif fault is BedrockFault.UNAVAILABLE:
            self._error(503, "ServiceUnavailableException", "try again")
        elif fault is BedrockFault.VALIDATION:
            self._error(400, "ValidationException", "The provided model identifier is invalid.")
        elif match.group(2) == "converse":
            self._converse(unquote(match.group(1)))
        else:
            self._converse_stream(fault)

    # -- authentication, as the service does it ------------------------------------
    def _authenticate(self, body: bytes) -> tuple[bool, str, tuple[int, str, str] | None]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        parsed = _AUTH.match(self.headers.get("Authorization", ""))
        if parsed is None:
            return False, "no SigV4 header", (403, "MissingAuthenticationTokenException", "")
        secret = self.server.state.secrets.get(parsed["key"])
        if secret is None:
            return False, "unknown key", (403, "UnrecognizedClientException", "invalid token")
        token = self.headers.get("X-Amz-Security-Token")
        if token == EXPIRED_TOKEN:
            return (
                False,
                "expired token",
                (
                    403,
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ),
            )
        amz_date = self.headers.get("X-Amz-Date", "")
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return False, "bad date", (403, "InvalidSignatureException", "bad X-Amz-Date")
        if abs((datetime.now(UTC) - when).total_seconds()) > 300 or amz_date[:8] != parsed["date"]:
            return False, "clock skew", (403, "InvalidSignatureException", "Signature expired")
        if parsed["region"] != REGION or parsed["service"] != "bedrock":
            return False, "wrong scope", (403, "InvalidSignatureException", "credential scope")
        signed = parsed["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return False, "unsigned host", (403, "InvalidSignatureException", "host not signed")
        headers = {name: self.headers.get(name, "") for name in signed}
        request = AWSRequest(
            method="POST",
            url=f"http://{self.headers['Host']}{self.path}",
            data=body,
            headers=headers,
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(parsed["key"], secret, token), "bedrock", REGION)
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, parsed["sig"]):
            return (
                False,
                "signature mismatch",
                (
                    403,
                    "InvalidSignatureException",
                    "The request signature we calculated does not match",
                ),
            )
        return True, "", None

    def _sts_denied(self) -> None:
        data = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            b"<Message>not authorized to perform sts:AssumeRole</Message></Error>"
            b"<RequestId>onbox-test</RequestId></ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- answers ---------------------------------------------------------------------
    def _converse(self, model: str) -> None:
        state = self.server.state
        if state.latency:
            time.sleep(state.latency)
        tokens_in, tokens_out = state.usage
        self._json(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": state.reply}]}},
                "stopReason": "end_turn",
                "usage": {
                    "inputTokens": tokens_in,
                    "outputTokens": tokens_out,
                    "totalTokens": tokens_in + tokens_out,
                },
                "metrics": {"latencyMs": 12},
            },
        )

    def _converse_stream(self, fault: BedrockFault) -> None:
        state = self.server.state
        if state.latency:
            time.sleep(state.latency)
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(event("messageStart", {"p": "abcd", "role": "assistant"}))
        pieces = [state.reply[i : i + 4] for i in range(0, len(state.reply), 4)] or [""]
        for i, piece in enumerate(pieces):
            frame = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            if i == 0 and fault is BedrockFault.BAD_CRC:
                frame = frame[:-6] + bytes([frame[-6] ^ 0x01]) + frame[-5:]
            self._chunk(frame)
            if i == 0 and fault is BedrockFault.STALL:
                state.release.wait(30)
                self.close_connection = True
                return
            if i == 0 and fault is BedrockFault.THROTTLED_MIDSTREAM:
                self._chunk(exception("throttlingException", "Too many tokens"))
                self._chunk(b"")
                return
        self._chunk(event("contentBlockStop", {"contentBlockIndex": 0}))
        self._chunk(event("messageStop", {"stopReason": "end_turn"}))
        tokens_in, tokens_out = state.usage
        self._chunk(
            event(
                "metadata",
                {
                    "usage": {
                        "inputTokens": tokens_in,
                        "outputTokens": tokens_out,
                        "totalTokens": tokens_in + tokens_out,
                    },
                    "metrics": {"latencyMs": 12},
                },
            )
        )
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _error(
        self, status: int, error_type: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        self._json(status, {"message": message}, {"x-amzn-ErrorType": error_type, **(extra or {})})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class BedrockServer:
    """The stand-in, serving on 127.0.0.1 in a background thread until :meth:`close`."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = _State()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[BedrockRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._httpd.state.lock:
            return list(self._httpd.state.requests)

    def clear(self) -> None:
        """Forget recorded requests and queued faults; answer normally again."""
        with self._httpd.state.lock:
            self._httpd.state.requests.clear()
            self._httpd.state.script.clear()
        self._httpd.state.latency = 0.0

    def push(self, fault: BedrockFault, *, retry_after: float | None = None) -> None:
        """Apply ``fault`` to the next authenticated request not yet scripted."""
        with self._httpd.state.lock:
            self._httpd.state.script.append((fault, retry_after))

    def set_reply(self, text: str, usage: tuple[int, int] = (21, 5)) -> None:
        """The completion text (and the token usage) the stand-in answers with."""
        self._httpd.state.reply = text
        self._httpd.state.usage = usage

    def set_latency(self, seconds: float) -> None:
        """Wait this long before answering (simulated model latency)."""
        self._httpd.state.latency = seconds

    def release(self) -> None:
        """Let stalled answers finish."""
        self._httpd.state.release.set()

    def close(self) -> None:
        """Stop serving."""
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> BedrockServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
