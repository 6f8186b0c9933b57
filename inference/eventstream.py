"""The AWS event-stream framing that Bedrock's ConverseStream answers in.

Each message is::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers            | payload              | message CRC32 (u32)

big-endian, where the prelude CRC covers the first 8 bytes and the message CRC every
byte before it. A header is a 1-byte name length, the name, a 1-byte type and a value
(booleans carry none; strings and byte arrays carry a 2-byte length). A message whose
CRC does not match is never handed on: a flipped bit in the middle of a completion
must not become code in the editor.

:class:`EventStreamDecoder` takes bytes as they arrive and returns whole messages. It
raises :class:`EventStreamError` (a :class:`ValueError`) on a bad CRC, an impossible
length, an unknown header type, or bytes left over when the stream ends.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

#: The service caps a message at 16 MiB; anything larger is a framing error, not a message.
MAX_MESSAGE = 16 * 1024 * 1024
_PRELUDE = 12
_MIN_MESSAGE = _PRELUDE + 4

HeaderValue = bool | int | bytes | str | datetime | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid AWS event stream."""


@dataclass(frozen=True)
class EventMessage:
    """One decoded message: its headers (``:message-type``, ``:event-type``, …) and payload."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str:
        """A string header, or ``""`` when absent or not a string."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""


class EventStreamDecoder:
    """Feed bytes in any chunking; get whole, CRC-checked messages back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[EventMessage]:
        """Add ``data``; return every message now complete, in order."""
        self._buffer += data
        messages: list[EventMessage] = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch: the stream is corrupt")
            if not _MIN_MESSAGE <= total <= MAX_MESSAGE or headers_length > total - _MIN_MESSAGE:
                raise EventStreamError(f"impossible message length {total}")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:-4]) != message_crc:
                raise EventStreamError("message CRC mismatch: the stream is corrupt")
            headers = _headers(frame[_PRELUDE : _PRELUDE + headers_length])
            messages.append(EventMessage(headers, frame[_PRELUDE + headers_length : -4]))
        return messages

    def finish(self) -> None:
        """Raise if the stream ended part-way through a message."""
        if self._buffer:
            raise EventStreamError(f"the stream ended {len(self._buffer)} bytes into a message")


def _headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(raw):
            name_length = raw[at]
            name = raw[at + 1 : at + 1 + name_length].decode("utf-8")
            at += 1 + name_length
            kind = raw[at]
            at += 1
            value, at = _value(raw, at, kind)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise EventStreamError("a header runs past the end of its block") from None
    if at != len(raw):
        raise EventStreamError("a header runs past the end of its block")
    return headers


_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q"}


def _value(raw: bytes, at: int, kind: int) -> tuple[HeaderValue, int]:
    if kind in (0, 1):
        return kind == 0, at
    if kind in _FIXED:
        fmt = _FIXED[kind]
        (number,) = struct.unpack_from(fmt, raw, at)
        return int(number), at + struct.calcsize(fmt)
    if kind in (6, 7):
        (length,) = struct.unpack_from(">H", raw, at)
        data = raw[at + 2 : at + 2 + length]
        if len(data) != length:
            raise IndexError
        return (data.decode("utf-8") if kind == 7 else data), at + 2 + length
    if kind == 8:
        (millis,) = struct.unpack_from(">q", raw, at)
        return datetime.fromtimestamp(millis / 1000, UTC), at + 8
    if kind == 9:
        data = raw[at : at + 16]
        if len(data) != 16:
            raise IndexError
        return uuid.UUID(bytes=data), at + 16
    raise EventStreamError(f"unknown header value type {kind}")
