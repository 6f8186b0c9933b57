"""Egress prompts encrypted to the security team's X25519 public key.

Envelope (a JSON object, placed by callers into the ``egress`` entry body)::

    {"alg": "X25519-HKDF-SHA256-ChaCha20Poly1305", "v": 1,
     "recipient": <sha256[:32] of the recipient's raw public key>,
     "epk": <base64 raw ephemeral X25519 public key>,
     "nonce": <base64 12 bytes>, "ct": <base64 ciphertext + 16-byte tag>}

Key: HKDF-SHA256(ikm = X25519(ephemeral, recipient), salt = epk || recipient public key,
info = b"onbox-prompt-v1", length 32). AAD: the UTF-8 bytes ``alg|v|recipient``. Only the
holder of the recipient's private key can read the prompt; the device cannot, once the
ephemeral key is gone.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onbox.audit.errors import EnvelopeError

ALG = "X25519-HKDF-SHA256-ChaCha20Poly1305"
INFO = b"onbox-prompt-v1"


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient, info=INFO).derive(
        shared
    )


def _aad(recipient_id: str) -> bytes:
    return f"{ALG}|1|{recipient_id}".encode()


def encrypt_prompt(prompt: str, recipient_public_key_b64: str) -> dict[str, Any]:
    """Encrypt ``prompt`` to the recipient's raw base64 X25519 public key."""
    try:
        recipient_raw = base64.b64decode(recipient_public_key_b64, validate=True)
        recipient = X25519PublicKey.from_public_bytes(recipient_raw)
    except ValueError as exc:
        raise EnvelopeError(
            "the security-team public key is not a base64 raw X25519 key; fix the policy's "
            "audit key"
        ) from exc
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), epk, recipient_raw)
    recipient_id = hashlib.sha256(recipient_raw).hexdigest()[:32]
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, prompt.encode("utf-8"), _aad(recipient_id))
    return {
        "alg": ALG,
        "v": 1,
        "recipient": recipient_id,
        "epk": base64.b64encode(epk).decode("ascii"),
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ct": base64.b64encode(ciphertext).decode("ascii"),
    }


def decrypt_prompt(envelope: Mapping[str, Any], private_key: X25519PrivateKey | str) -> str:
    """Open an envelope with the security team's private key (object or raw base64)."""
    try:
        if isinstance(private_key, str):
            private_key = X25519PrivateKey.from_private_bytes(
                base64.b64decode(private_key, validate=True)
            )
        if envelope.get("alg") != ALG or envelope.get("v") != 1:
            raise EnvelopeError(f"unsupported envelope algorithm {envelope.get('alg')!r}")
        recipient_raw = _raw(private_key.public_key())
        recipient_id = hashlib.sha256(recipient_raw).hexdigest()[:32]
        if envelope.get("recipient") != recipient_id:
            raise EnvelopeError(
                f"envelope is for key {envelope.get('recipient')}, not this key ({recipient_id})"
            )
        epk = base64.b64decode(str(envelope["epk"]), validate=True)
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(epk))
        plain = ChaCha20Poly1305(_key(shared, epk, recipient_raw)).decrypt(
            base64.b64decode(str(envelope["nonce"]), validate=True),
            base64.b64decode(str(envelope["ct"]), validate=True),
            _aad(recipient_id),
        )
    except EnvelopeError:
        raise
    except (InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"cannot open the envelope: {exc or 'authentication failed'}") from exc
    return plain.decode("utf-8")


def generate_recipient_key() -> tuple[str, str]:
    """A new security-team X25519 key pair as ``(private_b64, public_b64)`` (raw bytes)."""
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return (
        base64.b64encode(private_raw).decode("ascii"),
        base64.b64encode(_raw(private.public_key())).decode("ascii"),
    )
