"""What the language server and the model worker share: the wire, the socket, the peer check.

Messages are JSON objects, each preceded by its length as a 4-byte big-endian integer, over
a Unix-domain stream socket in the user's runtime directory (a 0700 directory). One worker
serves one (user, model file, load settings): its socket name is a hash of those.

Client → worker (``op``): ``load``, ``complete``, ``cancel``, ``describe``.
Worker → client (``event``): ``hello`` (on connect), ``progress``, ``started``, ``result``,
``bye`` (the worker is exiting cleanly, e.g. after its idle timeout).

Nothing here imports llama.cpp: the server process must stay free of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any

from onbox.inference.destination import Completion, CompletionRequest, ContextSnippet
from onbox.inference.errors import ModelError

#: Largest message either side accepts (a 5 MB file plus context fits easily).
MAX_MESSAGE = 64 << 20
_HEADER = struct.Struct(">I")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
#: AF_UNIX paths are limited to 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class ProtocolError(Exception):
    """The peer sent something that is not a framed JSON object."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes is over the {MAX_MESSAGE} limit")
    return _HEADER.pack(len(body)) + body


def _decode(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8", "surrogatepass"))
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError("a message must be a JSON object")
    return value


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """Write one framed message (blocking)."""
    sock.sendall(encode(message))


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> dict[str, Any] | None:
    """Read one framed message (blocking); ``None`` when the peer closed the connection."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes is over the {MAX_MESSAGE} limit")
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    return _decode(body)


class FrameReader:
    """Splits bytes read without blocking into messages (the client's side of the wire)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return every message it completes."""
        self._buffer += data
        out: list[dict[str, Any]] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_MESSAGE:
                raise ProtocolError(f"message of {size} bytes is over the {MAX_MESSAGE} limit")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            out.append(_decode(bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return out


# -- who may talk to a worker ----------------------------------------------------------------


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def peer_refusal(peer_uid: int, own_uid: int) -> str | None:
    """Why a peer with ``peer_uid`` is refused by a process running as ``own_uid`` (or None).

    Only the same user may use a worker: the model, its KV cache and every prompt are the
    user's own, and an on-box destination must never serve anyone else.
    """
    if peer_uid == own_uid:
        return None
    return f"peer uid {peer_uid} is not this worker's uid {own_uid}"


# -- where the socket lives ------------------------------------------------------------------


def runtime_dir() -> Path:
    """The user's private runtime directory for worker sockets, created 0700.

    ``ONBOX_RUNTIME_DIR`` overrides it (tests); otherwise ``$XDG_RUNTIME_DIR/onbox`` when
    the session has one, else ``onbox-<uid>`` under the temp dir. Raises
    :class:`ModelError` when the directory is someone else's or open to others.
    """
    override = os.environ.get("ONBOX_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "onbox"
    else:
        path = Path(tempfile.gettempdir()) / f"onbox-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ModelError(
            f"the model worker directory {path} belongs to uid {info.st_uid}, not you; "
            "remove it or set ONBOX_RUNTIME_DIR to a directory of your own"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def worker_name(model_path: Path, load_settings: dict[str, Any]) -> str:
    """Stable name of the worker for this model file and these load settings."""
    key = json.dumps({"model": str(model_path.resolve()), **load_settings}, sort_keys=True)
    return "model-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def socket_path(directory: Path, name: str) -> Path:
    """The worker's socket; raises :class:`ModelError` when the path is too long for AF_UNIX."""
    path = directory / f"{name}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ModelError(
            f"the model worker socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "set ONBOX_RUNTIME_DIR to a shorter directory"
        )
    return path


# -- payloads ---------------------------------------------------------------------------------


def request_to_json(request: CompletionRequest) -> dict[str, Any]:
    """A completion request as a JSON object."""
    data = dataclasses.asdict(request)
    data["stop"] = list(request.stop)
    return data


def request_from_json(data: dict[str, Any]) -> CompletionRequest:
    """The inverse of :func:`request_to_json`."""
    fields = {f.name for f in dataclasses.fields(CompletionRequest)}
    values = {k: v for k, v in data.items() if k in fields}
    values["context"] = tuple(ContextSnippet(**c) for c in data.get("context", ()))
    values["stop"] = tuple(data.get("stop", ()))
    return CompletionRequest(**values)


def completion_to_json(completion: Completion) -> dict[str, Any]:
    """A completion as a JSON object."""
    return dataclasses.asdict(completion)


def completion_from_json(data: dict[str, Any]) -> Completion:
    """The inverse of :func:`completion_to_json`."""
    fields = {f.name for f in dataclasses.fields(Completion)}
    return Completion(**{k: v for k, v in data.items() if k in fields})
