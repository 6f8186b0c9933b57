"""The upload a workstation sends to the collector: entries, key history, a signed claim.

One upload is a JSON object (``Content-Type: application/json``)::

    {"type": "onbox-journal-upload", "v": 1,
     "device": <root fingerprint>,
     "entries": [<journal lines, verbatim, contiguous seqs, oldest first>],
     "key_history": [<first segment header and every key-rotated line, verbatim>],
     "checkpoint": <signed checkpoint of the journal head, with
                    "upload": {"first_seq", "last_seq", "count", "sha256"}>}

``upload.sha256`` is SHA-256 over the entry lines joined by ``\\n``: the checkpoint
signature (by the device's current journal key) therefore covers every byte sent, so
the upload proves which device sent it, and a cut or altered upload is refused. An
upload without entries is a heartbeat: the signed checkpoint alone says the device is
alive and how far its journal reaches. Each entry stays individually verifiable (its
own hash and signature); the collector checks both, and the chain, per device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from onbox.audit.journal import Journal

UPLOAD_TYPE = "onbox-journal-upload"


def entries_digest(lines: Sequence[str]) -> str:
    """SHA-256 hex over the entry lines joined by newlines (what the checkpoint signs)."""
    digest = hashlib.sha256()
    for i, line in enumerate(lines):
        if i:
            digest.update(b"\n")
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def upload_claims(lines: Sequence[str], first_seq: int | None) -> dict[str, Any]:
    """The ``upload`` part of the checkpoint for these entry lines."""
    count = len(lines)
    return {
        "first_seq": first_seq if count else None,
        "last_seq": (first_seq + count - 1) if count and first_seq is not None else None,
        "count": count,
        "sha256": entries_digest(lines),
    }


def build_upload(
    journal: Journal,
    lines: Sequence[str],
    first_seq: int | None,
    key_history: Sequence[str],
) -> dict[str, Any]:
    """Sign and assemble one upload of ``lines`` (seqs ``first_seq``…) from ``journal``."""
    checkpoint = journal.checkpoint({"upload": upload_claims(lines, first_seq)})
    return {
        "type": UPLOAD_TYPE,
        "v": 1,
        "device": journal.device_fingerprint,
        "entries": list(lines),
        "key_history": list(key_history),
        "checkpoint": checkpoint,
    }
