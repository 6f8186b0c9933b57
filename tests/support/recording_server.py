"""A loopback HTTP server that records requests and injects the faults real services won't.

It speaks the OpenAI wire format (``/completions``, ``/chat/completions``, with or
without ``/v1``) and the Anthropic Messages API (``/v1/messages``), streaming server-sent
events when the request asks for ``"stream": true``. Every request — method, path,
headers, body — is recorded *before* any fault is applied, so a test sees exactly what
reached "the cloud". Faults are queued per request::

    with RecordingServer() as server:           # or RecordingServer(tls=True)
        server.push(Fault.STATUS_500)
        server.push(Fault.RATE_LIMITED, retry_after=7)
        ...
        server.requests[-1].json()

Fault kinds: ``OK``, ``STATUS_500``, ``RATE_LIMITED`` (429 + Retry-After), ``TIMEOUT``
(no answer until released), ``STALL`` (headers and one event, then nothing),
``INVALID_JSON``, ``DROP`` (connection closed mid-stream). With ``tls=True`` the server
presents a freshly generated self-signed certificate that no client trusts unless given
:attr:`RecordingServer.ca_file`.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any


class Fault(enum.Enum):
    """What the server does with one request."""

    OK = "ok"
    STATUS_500 = "500"
    RATE_LIMITED = "429"
    TIMEOUT = "timeout"
    STALL = "stall"
    INVALID_JSON = "invalid-json"
    DROP = "drop"


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the body (what the journal's ``promptSha256`` must equal)."""
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class _Script:
    fault: Fault
    retry_after: float | None = None


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    script: deque[_Script] = field(default_factory=deque)
    default: Fault = Fault.OK
    reply: str = "return total\n"
    latency: float = 0.0  # seconds before answering, like a model's time to first token
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200, {"object": "list", "data": [{"id": "recording", "object": "model"}]}
            )
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        state = self.server.state
        with state.lock:
            state.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
            step = state.script.popleft() if state.script else _Script(state.default)
        try:
            request = json.loads(body)
        except ValueError:
            self._send_json(400, {"error": {"message": "bad json"}})
            return
        anthropic = self.path.split("?")[0].endswith("/messages")
        chat = "chat/completions" in self.path
        fault = step.fault
        if fault is Fault.STATUS_500:
            self._send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
        elif fault is Fault.RATE_LIMITED:
            extra = {"Retry-After": f"{step.retry_after:g}"} if step.retry_after is not None else {}
            self._send_json(429, {"error": {"message": "slow down", "type": "rate_limit"}}, extra)
        elif fault is Fault.TIMEOUT:
            state.release.wait(30)
            self.close_connection = True
        elif fault is Fault.INVALID_JSON:
            if request.get("stream"):
                self._start_stream()
                self._chunk(b"data: {not json\n\n")
                self._chunk(b"")
            else:
                self._send_raw(200, b"{not json", "application/json")
        else:
            self._answer(request, anthropic=anthropic, chat=chat, fault=fault)

    # -- answers ---------------------------------------------------------------------
    def _answer(
        self, request: dict[str, Any], *, anthropic: bool, chat: bool, fault: Fault
    ) -> None:
        text = self.server.state.reply
        if self.server.state.latency:
            time.sleep(self.server.state.latency)
        if not request.get("stream"):
            if anthropic:
                body: dict[str, Any] = {
                    "type": "message",
                    "model": request.get("model", ""),
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 10, "output_tokens": 3},
                }
            elif chat:
                body = {
                    "model": "recording",
                    "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                    "usage": _usage(request, text),
                }
            else:
                body = {
                    "model": "recording",
                    "choices": [{"text": text, "finish_reason": "stop"}],
                    "usage": _usage(request, text),
                }
            self._send_json(200, body)
            return
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
        events = [self._event(p, anthropic=anthropic, chat=chat) for p in pieces]
        self._start_stream()
        if anthropic:
            self._chunk(
                b'event: message_start\ndata: {"type":"message_start","message":{"model":"recording","usage":{"input_tokens":10}}}\n\n'
            )
        for i, event in enumerate(events):
            self._chunk(event)
            if i == 0 and fault is Fault.STALL:
                self.server.state.release.wait(30)
                self.close_connection = True
                return
            if i == 0 and fault is Fault.DROP:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return
        options = request.get("stream_options")
        if not anthropic and isinstance(options, dict) and options.get("include_usage"):
            # as OpenAI does: a last chunk with no choices and the token counts
            usage = {"model": "recording", "choices": [], "usage": _usage(request, text)}
            self._chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
        if anthropic:
            self._chunk(
                b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}\n\n'
            )
            self._chunk(b'data: {"type":"message_stop"}\n\n')
        else:
            self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    @staticmethod
    def _event(piece: str, *, anthropic: bool, chat: bool) -> bytes:
        if anthropic:
            payload: dict[str, Any] = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
        elif chat:
            payload = {
                "model": "recording",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        else:
            payload = {
                "model": "recording",
                "choices": [{"index": 0, "text": piece, "finish_reason": None}],
            }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json", headers)

    def _send_raw(
        self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-answer are part of the tests


class RecordingServer:
    """The server, running in a background thread until :meth:`close` (or ``with`` exit)."""

    def __init__(self, *, tls: bool = False) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = _State()
        self._tmp: TemporaryDirectory[str] | None = None
        self.ca_file: str | None = None
        if tls:
            self._tmp = TemporaryDirectory(prefix="onbox-tls-")
            cert, key = _self_signed(Path(self._tmp.name))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self.ca_file = str(cert)
        self.port = self._httpd.server_address[1]
        scheme = "https" if tls else "http"
        host = "localhost" if tls else "127.0.0.1"
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, oldest first (a copy)."""
        with self._httpd.state.lock:
            return list(self._httpd.state.requests)

    def clear(self) -> None:
        """Forget recorded requests and queued faults."""
        with self._httpd.state.lock:
            self._httpd.state.requests.clear()
            self._httpd.state.script.clear()

    def clear_script(self) -> None:
        """Drop queued faults that no request has taken yet."""
        with self._httpd.state.lock:
            self._httpd.state.script.clear()

    def push(self, fault: Fault, *, retry_after: float | None = None) -> None:
        """Apply ``fault`` to the next request not yet scripted."""
        with self._httpd.state.lock:
            self._httpd.state.script.append(_Script(fault, retry_after))

    def set_default(self, fault: Fault) -> None:
        """What to do with requests that have no scripted fault."""
        self._httpd.state.default = fault

    def set_reply(self, text: str) -> None:
        """The completion text the server answers with."""
        self._httpd.state.reply = text

    def set_latency(self, seconds: float) -> None:
        """Wait this long before answering each request (simulated model latency)."""
        self._httpd.state.latency = seconds

    def release(self) -> None:
        """Let requests held by ``TIMEOUT`` or ``STALL`` finish (and later ones not wait)."""
        self._httpd.state.release.set()

    def close(self) -> None:
        """Stop serving and remove the certificate files."""
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _usage(request: dict[str, Any], text: str) -> dict[str, int]:
    """Token counts as an OpenAI server reports them (here: a word is a token)."""
    prompt = str(request.get("prompt", "")) + str(request.get("suffix", ""))
    prompt += "".join(str(m.get("content", "")) for m in request.get("messages") or [])
    return {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
