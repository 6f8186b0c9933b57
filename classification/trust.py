"""Admin keys, the trust root, and k-of-n signature checks for signed policy.

Admins hold Ed25519 keys. A workstation trusts the keys listed in its *trust root*
(``onbox.paths.trust_root_path()``), a small JSON document::

    {"type": "onbox-trust-root/v1", "version": 1, "threshold": 2,
     "keys": [{"keyid": "<hex>", "public": "<base64 raw key>"}, ...],
     "signatures": [{"keyid": "<hex>", "sig": "<base64>"}, ...]}

A key id is the hex SHA-256 of the raw 32-byte public key. A threshold counts
*distinct* key ids: one key signing twice counts once. A new trust root replaces the
old one only if its version is exactly one more and it is signed by a threshold of
the old keys *and* a threshold of its own keys (The Update Framework's root rotation).

Errors of the whole signed-distribution machinery (trust, bundles, store, sources)::

    ClassificationError               onbox.classification's base (policy_model)
     └── DistributionError            something about signed policy went wrong
          ├── TrustRootError          trust root missing, unreadable or malformed
          │    └── RotationError      a new trust root is not a valid successor
          ├── BundleError             a policy bundle is malformed, oversized or stale
          │    └── SignatureError     signatures do not meet the trust root's threshold
          ├── KeyFileError            an admin key file cannot be read
          └── SourceError             a policy source could not be fetched
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onbox.classification.policy_model import ClassificationError

logger = logging.getLogger(__name__)

TRUST_ROOT_TYPE = "onbox-trust-root/v1"


class DistributionError(ClassificationError):  # type: ignore[misc,unused-ignore]
    """Base of every signed-policy distribution error."""


class TrustRootError(DistributionError):
    """The trust root is missing, unreadable or malformed."""


class RotationError(TrustRootError):
    """A proposed trust root is not a valid successor of the current one."""


class BundleError(DistributionError):
    """A policy bundle is malformed, oversized, expired or stale."""


class SignatureError(BundleError):
    """A document's signatures do not meet the trust root's threshold."""


class KeyFileError(DistributionError):
    """An admin key file cannot be read."""


class SourceError(DistributionError):
    """A policy source (directory, git repository, HTTPS URL) could not be fetched."""


def canonical_json(value: Any) -> bytes:
    """The canonical encoding that signatures cover: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def b64encode(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode strict base64 or raise :class:`ValueError` naming ``what``."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise ValueError(f"{what} is not valid base64: {exc}") from None


def key_id(public: Ed25519PublicKey) -> str:
    """The key id of ``public``: hex SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(public_bytes(public)).hexdigest()


def public_bytes(public: Ed25519PublicKey) -> bytes:
    """The raw 32-byte form of ``public``."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Signature:
    """One signature over a canonical payload, by the key with ``keyid``."""

    keyid: str
    sig: bytes

    def to_json(self) -> dict[str, str]:
        """JSON form: ``{"keyid": hex, "sig": base64}``."""
        return {"keyid": self.keyid, "sig": b64encode(self.sig)}

    @staticmethod
    def list_from_json(raw: Any, what: str) -> tuple[Signature, ...]:
        """Parse a JSON list of signatures or raise :class:`ValueError`."""
        if not isinstance(raw, list):
            raise ValueError(f"{what}: 'signatures' must be a list")
        out: list[Signature] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("keyid"), str):
                raise ValueError(f"{what}: signature {i} needs a string 'keyid'")
            sig = item.get("sig")
            if not isinstance(sig, str):
                raise ValueError(f"{what}: signature {i} needs a base64 'sig'")
            out.append(Signature(item["keyid"], b64decode(sig, f"{what}: signature {i}")))
        return tuple(out)


def sign_payload(private: Ed25519PrivateKey, payload: bytes) -> Signature:
    """Sign ``payload`` with ``private``."""
    return Signature(key_id(private.public_key()), private.sign(payload))


def count_valid(
    payload: bytes,
    signatures: Sequence[Signature],
    keys: Mapping[str, Ed25519PublicKey],
    threshold: int,
    what: str,
) -> frozenset[str]:
    """Return the distinct trusted key ids whose signature over ``payload`` verifies.

    Raises :class:`SignatureError` with a reason a person can act on when fewer than
    ``threshold`` distinct trusted keys signed.
    """
    if not signatures:
        raise SignatureError(f"{what} has no signatures; sign it with `onbox policy sign`")
    good: set[str] = set()
    unknown: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    duplicates: set[str] = set()
    for signature in signatures:
        if signature.keyid in seen:
            duplicates.add(signature.keyid)
        seen.add(signature.keyid)
        public = keys.get(signature.keyid)
        if public is None:
            unknown.append(signature.keyid)
            continue
        try:
            public.verify(signature.sig, payload)
        except InvalidSignature:
            invalid.append(signature.keyid)
            continue
        good.add(signature.keyid)
    if len(good) >= threshold:
        return frozenset(good)
    details: list[str] = []
    if unknown:
        details.append("signed by unknown key(s) " + ", ".join(k[:16] for k in unknown))
    if invalid:
        details.append("invalid signature(s) by key(s) " + ", ".join(k[:16] for k in invalid))
    if duplicates:
        details.append(
            "key(s) " + ", ".join(k[:16] for k in sorted(duplicates)) + " signed more than once"
            " and count once"
        )
    detail = f" ({'; '.join(details)})" if details else ""
    raise SignatureError(
        f"{what}: threshold not met: {len(good)} of {threshold} required distinct trusted"
        f" signatures{detail}"
    )


@dataclass(frozen=True)
class TrustRoot:
    """Admin public keys and the number of distinct ones that must sign."""

    version: int
    threshold: int
    keys: Mapping[str, Ed25519PublicKey]
    signatures: tuple[Signature, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.version < 1:
            raise TrustRootError(f"trust root version must be >= 1, got {self.version}")
        if not self.keys:
            raise TrustRootError("trust root lists no keys; add admin keys with --key")
        if not 1 <= self.threshold <= len(self.keys):
            raise TrustRootError(
                f"trust root threshold {self.threshold} must be between 1 and the number"
                f" of keys ({len(self.keys)})"
            )

    @staticmethod
    def create(publics: Iterable[Ed25519PublicKey], threshold: int, version: int = 1) -> TrustRoot:
        """A new unsigned trust root for ``publics``."""
        keys = {key_id(p): p for p in publics}
        return TrustRoot(version, threshold, keys)

    def signed_payload(self) -> bytes:
        """Canonical bytes that root signatures cover (everything but the signatures)."""
        body = self._body()
        return canonical_json(body)

    def _body(self) -> dict[str, Any]:
        return {
            "type": TRUST_ROOT_TYPE,
            "version": self.version,
            "threshold": self.threshold,
            "keys": [
                {"keyid": kid, "public": b64encode(public_bytes(pub))}
                for kid, pub in sorted(self.keys.items())
            ],
        }

    def to_bytes(self) -> bytes:
        """The JSON file form, signatures included."""
        body = self._body()
        body["signatures"] = [s.to_json() for s in self.signatures]
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    def with_signature(self, private: Ed25519PrivateKey) -> TrustRoot:
        """A copy with ``private``'s signature added (replacing an earlier one by it)."""
        sig = sign_payload(private, self.signed_payload())
        kept = tuple(s for s in self.signatures if s.keyid != sig.keyid)
        return TrustRoot(self.version, self.threshold, self.keys, (*kept, sig))

    def verify(self, payload: bytes, signatures: Sequence[Signature], what: str) -> frozenset[str]:
        """Check that a threshold of this root's keys signed ``payload``."""
        return count_valid(payload, signatures, self.keys, self.threshold, what)

    def accept_successor(self, new: TrustRoot) -> TrustRoot:
        """Return ``new`` if it is a valid rotation of this root, else raise :class:`RotationError`."""
        if new.version != self.version + 1:
            raise RotationError(
                f"new trust root has version {new.version}; expected exactly"
                f" {self.version + 1} (current is {self.version})"
            )
        payload = new.signed_payload()
        try:
            self.verify(payload, new.signatures, "new trust root (by the current keys)")
            new.verify(payload, new.signatures, "new trust root (by its own keys)")
        except SignatureError as exc:
            raise RotationError(f"rotation rejected: {exc}") from None
        return new

    @staticmethod
    def from_bytes(data: bytes, source: str = "trust root") -> TrustRoot:
        """Parse a trust root JSON document or raise :class:`TrustRootError`."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("top level must be a JSON object")
            if raw.get("type") != TRUST_ROOT_TYPE:
                raise ValueError(f"'type' must be {TRUST_ROOT_TYPE!r}")
            version, threshold = raw.get("version"), raw.get("threshold")
            if not isinstance(version, int) or not isinstance(threshold, int):
                raise ValueError("'version' and 'threshold' must be integers")
            keys: dict[str, Ed25519PublicKey] = {}
            for i, item in enumerate(raw.get("keys") or []):
                if not isinstance(item, dict) or not isinstance(item.get("public"), str):
                    raise ValueError(f"key {i} needs a base64 'public'")
                pub = Ed25519PublicKey.from_public_bytes(
                    b64decode(item["public"], f"key {i} 'public'")
                )
                kid = key_id(pub)
                if item.get("keyid") not in (None, kid):
                    raise ValueError(f"key {i}: keyid does not match its public key")
                keys[kid] = pub
            sigs = Signature.list_from_json(raw.get("signatures", []), source)
        except (ValueError, TypeError) as exc:
            raise TrustRootError(f"{source} is malformed: {exc}") from None
        return TrustRoot(version, threshold, keys, sigs)

    @staticmethod
    def load(path: Path) -> TrustRoot:
        """Read the trust root at ``path`` or raise :class:`TrustRootError`."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TrustRootError(
                f"no trust root at {path}; install one with `onbox admin trust-root install`"
                " or point ONBOX_TRUST_ROOT at it"
            ) from None
        except OSError as exc:
            raise TrustRootError(f"cannot read trust root {path}: {exc}") from None
        return TrustRoot.from_bytes(data, str(path))


def generate_private_key() -> Ed25519PrivateKey:
    """A new Ed25519 admin key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(private: Ed25519PrivateKey) -> bytes:
    """The unencrypted PKCS#8 PEM form of ``private``."""
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PKCS#8 PEM, as written by `onbox admin keygen`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" not in data:
        looks_public = path.suffix == ".pub" or b"PUBLIC KEY" in data or _is_base64_key(data)
        what = "a public key" if looks_public else "not a PEM private key"
        raise KeyFileError(
            f"{path} is {what}; sign with the private key file that `onbox admin keygen` "
            "wrote beside it (the one without .pub, starting with "
            "'-----BEGIN PRIVATE KEY-----')"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # cryptography's messages point at its FAQ; say what the admin can do instead.
        detail = str(exc).split(". See https://", 1)[0].split("See https://", 1)[0].strip()
        raise KeyFileError(
            f"cannot read private key {path}: {detail or 'not a valid PEM key'} "
            "(expected an unencrypted PKCS#8 Ed25519 key from `onbox admin keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def _is_base64_key(data: bytes) -> bool:
    """Whether ``data`` is base64 of 32 raw bytes (an Onbox ``.pub`` file)."""
    try:
        return len(b64decode(data.decode("ascii").strip(), "key")) == 32
    except (ValueError, UnicodeDecodeError):
        return False


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw bytes, or raise :class:`KeyFileError`."""
    try:
        return Ed25519PublicKey.from_public_bytes(b64decode(text.strip(), "public key"))
    except ValueError as exc:
        raise KeyFileError(f"not an Ed25519 public key: {exc}") from None


def load_public_key(spec: str) -> Ed25519PublicKey:
    """A public key from a ``.pub`` file path or its base64 text."""
    path = Path(spec)
    if path.is_file():
        try:
            return parse_public_key(path.read_text("ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read public key {path}: {exc}") from None
    return parse_public_key(spec)
