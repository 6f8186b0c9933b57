"""Signed checkpoints: "this device's journal had N entries ending in hash H at time T".

A checkpoint kept off the machine (in an export bundle, or by the security team) makes
truncation and rollback detectable: a journal that later ends before the checkpoint's
``seq``, or holds a different entry at that ``seq``, was cut or replaced by an older copy.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from onbox.audit.canonical import canonical_json
from onbox.audit.keys import DeviceKey, fingerprint_of, public_key_from_b64, verify_signature

CHECKPOINT_TYPE = "onbox-journal-checkpoint"
CHECKPOINT_DOMAIN = b"onbox-journal-checkpoint-v1:"


def sign_checkpoint(
    key: DeviceKey,
    *,
    device: str,
    seq: int,
    head: str,
    time: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build and sign a checkpoint of the journal head ``seq``/``head`` (plus ``extra`` fields)."""
    body: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "v": 1,
        "device": device,
        "key": key.fingerprint,
        "public_key": key.public_b64,
        "seq": seq,
        "entries": seq + 1,
        "head": head,
        "time": time,
    }
    body.update(extra or {})
    body["sig"] = key.sign(CHECKPOINT_DOMAIN + canonical_json(body))
    return body


def checkpoint_problem(checkpoint: Mapping[str, Any]) -> str | None:
    """None when the checkpoint is well-formed and its signature verifies; else why not."""
    try:
        if checkpoint.get("type") != CHECKPOINT_TYPE:
            return "not an Onbox journal checkpoint"
        unsigned = {k: v for k, v in checkpoint.items() if k != "sig"}
        public_raw = base64.b64decode(str(checkpoint["public_key"]), validate=True)
        if fingerprint_of(public_raw) != checkpoint["key"]:
            return "checkpoint public key does not match its key fingerprint"
        public = public_key_from_b64(str(checkpoint["public_key"]))
        if not verify_signature(
            public, str(checkpoint["sig"]), CHECKPOINT_DOMAIN + canonical_json(unsigned)
        ):
            return "checkpoint signature is invalid"
        int(checkpoint["seq"])
        str(checkpoint["head"])
    except (KeyError, ValueError, TypeError) as exc:
        return f"malformed checkpoint: {exc}"
    return None
