"""A loopback stand-in for Vertex AI and Google's OAuth token endpoint.

:func:`service_account_file` writes a test service-account key whose ``token_uri`` is
this server's ``/token``. google-auth signs a JWT with that key and trades it for an
access token there; the stand-in verifies the JWT's RS256 signature with the key's
public half, its issuer, audience and expiry, and issues a random bearer token. The
model endpoints then accept only tokens it issued and has not revoked — as Vertex does::

    with VertexServer() as gcp:
        key_file = gcp.service_account_file(tmp_path)   # GOOGLE_APPLICATION_CREDENTIALS
        gcp.push(VertexFault.RATE_LIMITED, retry_after=2)
        ...
        assert gcp.requests[-1].authorized

Paths served: ``/v1/projects/{p}/locations/{l}/publishers/{pub}/models/{m}:{method}``
for ``generateContent``, ``streamGenerateContent`` (SSE with ``alt=sse``), ``rawPredict``
and ``streamRawPredict`` (Anthropic's Messages API, or Codestral FIM for ``mistralai``).
Faults: ``OK``, ``STATUS_500``, ``RATE_LIMITED`` (429 RESOURCE_EXHAUSTED + Retry-After),
``REVOKED`` (401: the token is revoked before it is checked), ``STALL`` (one event,
then nothing until released), ``NOT_FOUND`` (404).
"""

from __future__ import annotations

import base64
import enum
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

PROJECT = "onbox-test-project"
LOCATION = "europe-west4"
CLIENT_EMAIL = "onbox-test@onbox-test-project.iam.gserviceaccount.com"

_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/"
    r"(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)(?:\?(?P<query>.*))?$"
)


class VertexFault(enum.Enum):
    """What the stand-in does with one model request."""

    OK = "ok"
    STATUS_500 = "500"
    RATE_LIMITED = "429"
    REVOKED = "401"
    STALL = "stall"
    NOT_FOUND = "404"


@dataclass(frozen=True)
class VertexRequest:
    """One model request as it arrived, and whether its bearer token was accepted."""

    path: str
    headers: dict[str, str]
    body: bytes
    authorized: bool

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _State:
    public_key: Any = None
    requests: list[VertexRequest] = field(default_factory=list)
    token_requests: int = 0
    tokens: set[str] = field(default_factory=set)
    token_endpoint_down: bool = False
    token_lifetime: int = 3599
    script: deque[tuple[VertexFault, float | None]] = field(default_factory=deque)
    reply: str = "return sum(xs)\n"
    usage: tuple[int, int] = (30, 6)
    latency: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real services stream: each event leaves at once
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/token":
            self._token(body)
            return
        state = self.server.state
        with state.lock:
            fault, retry_after = state.script.popleft() if state.script else (VertexFault.OK, None)
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if fault is VertexFault.REVOKED:
                state.tokens.discard(token)
            authorized = token in state.tokens
            state.requests.append(
                VertexRequest(self.path, dict(self.headers.items()), body, authorized)
            )
        if not authorized:
            self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return
        match = _PATH.match(self.path)
        if match is None or match["project"] != PROJECT or match["location"] != LOCATION:
            self._error(404, "NOT_FOUND", "no such model or project")
            return
        if fault is VertexFault.STATUS_500:
            self._error(500, "INTERNAL", "internal error")
        elif fault is VertexFault.RATE_LIMITED:
            extra = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", extra)
        elif fault is VertexFault.NOT_FOUND:
            self._error(404, "NOT_FOUND", "Publisher model not found")
        else:
            self._answer(match["publisher"], match["method"], match["query"] or "", fault)

    # -- OAuth -----------------------------------------------------------------------
    def _token(self, body: bytes) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        state = self.server.state
        with state.lock:
            state.token_requests += 1
        if state.token_endpoint_down:
            self._json(400, {"error": "invalid_grant", "error_description": "account disabled"})
            return
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            self._json(400, {"error": "unsupported_grant_type"})
            return
        try:
            header, claims, signature = form["assertion"][0].split(".")
            state.public_key.verify(
                _b64(signature),
                f"{header}.{claims}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            payload = json.loads(_b64(claims))
        except (KeyError, ValueError, InvalidSignature):
            self._json(400, {"error": "invalid_grant", "error_description": "bad assertion"})
            return
        # google-auth names Google's token endpoint as the audience whatever token_uri is.
        audience = "https://oauth2.googleapis.com/token"
        now = time.time()
        if (
            payload.get("iss") != CLIENT_EMAIL
            or payload.get("aud") != audience
            or not payload.get("iat", now + 1) <= now + 60 < payload.get("exp", 0) + 60
            or "cloud-platform" not in payload.get("scope", "")
        ):
            self._json(400, {"error": "invalid_grant", "error_description": "bad claims"})
            return
        token = "ya29.onbox-test-" + secrets.token_urlsafe(16)
        with state.lock:
            state.tokens.add(token)
        lifetime = state.token_lifetime
        self._json(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    # -- answers ---------------------------------------------------------------------
    def _answer(self, publisher: str, method: str, query: str, fault: VertexFault) -> None:
        state = self.server.state
        if state.latency:
            time.sleep(state.latency)
        pieces = [state.reply[i : i + 4] for i in range(0, len(state.reply), 4)] or [""]
        tokens_in, tokens_out = state.usage
        streaming = method.startswith("stream")
        if publisher == "google":
            if streaming and "alt=sse" not in query:
                self._error(400, "INVALID_ARGUMENT", "this stand-in streams only with alt=sse")
                return
            usage = {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out}
            if not streaming:
                self._json(200, _gemini(state.reply, "STOP", usage))
                return
            events = [_gemini(p, None, None) for p in pieces]
            events.append(_gemini("", "STOP", usage))
        elif publisher == "anthropic":
            usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
            if not streaming:
                self._json(
                    200,
                    {
                        "type": "message",
                        "model": "claude-on-vertex",
                        "content": [{"type": "text", "text": state.reply}],
                        "stop_reason": "end_turn",
                        "usage": usage,
                    },
                )
                return
            events = [{"type": "message_start", "message": {"usage": {"input_tokens": tokens_in}}}]
            events += [
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": p}}
                for p in pieces
            ]
            events.append(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": tokens_out},
                }
            )
            events.append({"type": "message_stop"})
        else:  # mistralai: Codestral FIM, OpenAI-shaped
            usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
            if not streaming:
                self._json(
                    200,
                    {
                        "model": "codestral",
                        "choices": [{"message": {"content": state.reply}, "finish_reason": "stop"}],
                        "usage": usage,
                    },
                )
                return
            events = [
                {"choices": [{"delta": {"content": p}, "finish_reason": None}]} for p in pieces
            ]
            events.append({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, item in enumerate(events):
            self._chunk(b"data: " + json.dumps(item).encode() + b"\r\n\r\n")
            if i == 1 and fault is VertexFault.STALL:
                state.release.wait(30)
                self.close_connection = True
                return
        if publisher == "mistralai":
            self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _error(
        self, status: int, reason: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        self._json(status, {"error": {"code": status, "message": message, "status": reason}}, extra)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _gemini(text: str, finish: str | None, usage: dict[str, int] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-test-001"}
    if usage:
        chunk["usageMetadata"] = usage
    return chunk


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class VertexServer:
    """The stand-in, serving on 127.0.0.1 in a background thread until :meth:`close`."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = _State(public_key=self._key.public_key())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def service_account_file(self, directory: Path) -> Path:
        """A service-account key file for the test account, its token_uri on this server."""
        from cryptography.hazmat.primitives import serialization

        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "onbox-test-key-1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": f"{self.url}/token",
        }
        path = directory / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    @property
    def requests(self) -> list[VertexRequest]:
        """Every model request received so far, oldest first (a copy)."""
        with self._httpd.state.lock:
            return list(self._httpd.state.requests)

    @property
    def token_requests(self) -> int:
        """How many times a token was asked for."""
        return self._httpd.state.token_requests

    def clear(self) -> None:
        """Forget requests, faults and issued tokens; answer normally again."""
        state = self._httpd.state
        with state.lock:
            state.requests.clear()
            state.script.clear()
            state.tokens.clear()
            state.token_requests = 0
        state.latency = 0.0
        state.token_endpoint_down = False
        state.token_lifetime = 3599

    def push(self, fault: VertexFault, *, retry_after: float | None = None) -> None:
        """Apply ``fault`` to the next model request not yet scripted."""
        with self._httpd.state.lock:
            self._httpd.state.script.append((fault, retry_after))

    def set_reply(self, text: str, usage: tuple[int, int] = (30, 6)) -> None:
        """The completion text (and token usage) the stand-in answers with."""
        self._httpd.state.reply = text
        self._httpd.state.usage = usage

    def set_latency(self, seconds: float) -> None:
        """Wait this long before answering (simulated model latency)."""
        self._httpd.state.latency = seconds

    def set_token_lifetime(self, seconds: int) -> None:
        """The ``expires_in`` of tokens issued from now on."""
        self._httpd.state.token_lifetime = seconds

    def set_token_endpoint_down(self, down: bool) -> None:
        """Make ``/token`` refuse every grant (a disabled account)."""
        self._httpd.state.token_endpoint_down = down

    def release(self) -> None:
        """Let stalled answers finish."""
        self._httpd.state.release.set()

    def close(self) -> None:
        """Stop serving."""
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> VertexServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
