"""One journal entry: its fields, its hash and its signatures.

An entry is one line of a segment file, a JSON object::

    {"v": 1, "seq": 7, "time": "2026-11-27T05:01:02.123456Z", "kind": "egress",
     "body": {...}, "prev": "<hash of entry 6>", "key": "<signing key fingerprint>",
     "hash": "<sha256 hex>", "sig": "<base64 Ed25519>", "cosig": "<base64, key-rotated only>"}

``hash`` is SHA-256 over the canonical JSON (RFC 8785) of the object without ``hash``,
``sig`` and ``cosig``. ``sig`` (and ``cosig``) sign the bytes ``ENTRY_DOMAIN`` followed by
the 32 raw bytes of that hash. The line is exactly the canonical core without its closing
brace, then ``,"hash":"…","sig":"…"`` (and ``,"cosig":"…"``) and ``}``; verifiers reject
any other form, so no byte of a line can change unnoticed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onbox.audit.canonical import canonical_json
from onbox.audit.keys import DeviceKey

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
HEADER_KIND = "segment-header"
ENTRY_DOMAIN = b"onbox-journal-entry-v1:"
CORE_FIELDS = ("v", "seq", "time", "kind", "body", "prev", "key")

KINDS = frozenset(
    {
        HEADER_KIND,
        "server-start",
        "server-stop",
        "completion",
        "egress",
        "acceptance",
        "policy-applied",
        "policy-rejected",
        "label-changed",
        "key-created",
        "key-rotated",
        "recovered",
        "model-crashed",
    }
)


@dataclass(frozen=True)
class Receipt:
    """What :meth:`Journal.append` returns: the entry's sequence number and hash."""

    seq: int
    entry_hash: str


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (accepts any ISO 8601 with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def signing_message(entry_hash: str) -> bytes:
    """The bytes an entry's signatures cover."""
    return ENTRY_DOMAIN + bytes.fromhex(entry_hash)


def entry_hash(core: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of an entry's core fields."""
    return hashlib.sha256(canonical_json({k: core[k] for k in CORE_FIELDS})).hexdigest()


def seal(
    *,
    seq: int,
    time: str,
    kind: str,
    body: Mapping[str, Any],
    prev: str,
    key: DeviceKey,
    key_id: str | None = None,
    cosigner: DeviceKey | None = None,
) -> tuple[bytes, str]:
    """Build, hash and sign one entry; returns the line (with ``\\n``) and its hash."""
    core = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "time": time,
        "kind": kind,
        "body": body,
        "prev": prev,
        "key": key_id or key.fingerprint,
    }
    encoded = canonical_json(core)
    digest = hashlib.sha256(encoded).hexdigest()
    message = signing_message(digest)
    tail = f',"hash":"{digest}","sig":"{key.sign(message)}"'
    if cosigner is not None:
        tail += f',"cosig":"{cosigner.sign(message)}"'
    return encoded[:-1] + tail.encode("ascii") + b"}\n", digest
