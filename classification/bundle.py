"""The signed policy bundle: one file carrying a policy, its serial, expiry and signatures.

A bundle is a JSON document (conventionally ``*.onbox-policy``)::

    {"type": "onbox-policy-bundle/v1",
     "policy": "<base64 of the policy TOML bytes>",
     "serial": 42, "issued": "2026-11-27T05:00:00Z", "expires": "2027-01-01T00:00:00Z",
     "signatures": [{"keyid": "<hex>", "sig": "<base64 Ed25519>"}]}

Signatures cover the canonical JSON (sorted keys, no spaces) of
``{"type", "policy_sha256", "serial", "issued", "expires"}``; the policy bytes are bound
through their SHA-256. Errors are those of :mod:`onbox.classification.trust`
(:class:`BundleError`, :class:`SignatureError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onbox.classification.trust import (
    BundleError,
    Signature,
    TrustRoot,
    b64decode,
    b64encode,
    canonical_json,
    sign_payload,
)

logger = logging.getLogger(__name__)

BUNDLE_TYPE = "onbox-policy-bundle/v1"
#: Bundles larger than this are refused before parsing.
MAX_BUNDLE_BYTES = 1024 * 1024
#: File suffixes a directory or git source looks for.
BUNDLE_SUFFIXES = (".onbox-policy", ".json")


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC text with a ``Z`` suffix, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, what: str = "time") -> datetime:
    """Parse an ISO 8601 date or date-time; a bare date means 00:00 UTC that day.

    A date-time without a zone is taken as UTC. Raises :class:`ValueError`.
    """
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} {text!r} is not an ISO 8601 date or date-time: {exc}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PolicyBundle:
    """A policy's bytes with the serial, issue time, expiry and signatures that admit it."""

    policy: bytes
    serial: int
    issued: datetime
    expires: datetime
    signatures: tuple[Signature, ...] = field(default=())

    @property
    def policy_sha256(self) -> str:
        """Hex SHA-256 of the policy bytes."""
        return hashlib.sha256(self.policy).hexdigest()

    def signed_payload(self) -> bytes:
        """The canonical bytes every signature covers."""
        payload: bytes = canonical_json(
            {
                "type": BUNDLE_TYPE,
                "policy_sha256": self.policy_sha256,
                "serial": self.serial,
                "issued": format_time(self.issued),
                "expires": format_time(self.expires),
            }
        )
        return payload

    def signed_by(self, keys: Iterable[Ed25519PrivateKey]) -> PolicyBundle:
        """A copy with one more signature per key (a key already present is re-signed)."""
        sigs = list(self.signatures)
        payload = self.signed_payload()
        for key in keys:
            sig = sign_payload(key, payload)
            sigs = [s for s in sigs if s.keyid != sig.keyid]
            sigs.append(sig)
        return PolicyBundle(self.policy, self.serial, self.issued, self.expires, tuple(sigs))

    def verify(self, root: TrustRoot) -> frozenset[str]:
        """Distinct trusted key ids that signed; raises :class:`SignatureError` below threshold."""
        signers: frozenset[str] = root.verify(
            self.signed_payload(), self.signatures, f"bundle serial {self.serial}"
        )
        return signers

    def is_expired(self, now: datetime) -> bool:
        """Whether ``now`` is at or past the expiry."""
        return now >= self.expires

    def to_bytes(self) -> bytes:
        """The bundle file's bytes."""
        body = {
            "type": BUNDLE_TYPE,
            "policy": b64encode(self.policy),
            "serial": self.serial,
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "signatures": [s.to_json() for s in self.signatures],
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @staticmethod
    def from_bytes(data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> PolicyBundle:
        """Parse bundle bytes or raise :class:`BundleError` saying what is wrong."""
        if len(data) > max_bytes:
            raise BundleError(
                f"bundle is over the {max_bytes}-byte size cap ({len(data)} bytes read);"
                " keep the policy smaller"
            )
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"bundle is not JSON: {exc}") from None
        try:
            return _from_json(raw)
        except (ValueError, TypeError) as exc:
            raise BundleError(f"bundle is malformed: {exc}") from None


def _from_json(raw: Any) -> PolicyBundle:
    if not isinstance(raw, dict):
        raise ValueError("top level must be a JSON object")
    if raw.get("type") != BUNDLE_TYPE:
        raise ValueError(f"'type' must be {BUNDLE_TYPE!r}, got {raw.get('type')!r}")
    serial = raw.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise ValueError("'serial' must be a positive integer")
    for name in ("policy", "issued", "expires"):
        if not isinstance(raw.get(name), str):
            raise ValueError(f"{name!r} must be a string")
    return PolicyBundle(
        policy=b64decode(raw["policy"], "'policy'"),
        serial=serial,
        issued=parse_time(raw["issued"], "'issued'"),
        expires=parse_time(raw["expires"], "'expires'"),
        signatures=Signature.list_from_json(raw.get("signatures", []), "bundle"),
    )


def make_bundle(
    policy: bytes,
    serial: int,
    expires: datetime,
    keys: Iterable[Ed25519PrivateKey],
    issued: datetime | None = None,
) -> PolicyBundle:
    """Build and sign a bundle for ``policy`` (issued now unless given)."""
    if serial < 1:
        raise BundleError(f"serial must be a positive integer, got {serial}")
    issued_at = issued or datetime.now(UTC)
    if expires <= issued_at:
        raise BundleError(
            f"expiry {format_time(expires)} is not after issue time {format_time(issued_at)}"
        )
    # Round to whole seconds so the signed text and the fields agree exactly.
    bundle = PolicyBundle(
        policy,
        serial,
        issued_at.astimezone(UTC).replace(microsecond=0),
        expires.astimezone(UTC).replace(microsecond=0),
    )
    return bundle.signed_by(keys)
