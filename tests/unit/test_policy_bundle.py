"""Signed bundles and trust roots: k-of-n over distinct keys, tampering, rotation."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onbox.classification.bundle import PolicyBundle, make_bundle, parse_time
from onbox.classification.trust import (
    BundleError,
    RotationError,
    SignatureError,
    TrustRoot,
    TrustRootError,
    key_id,
    load_private_key,
    private_key_pem,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.generate() for _ in range(n)]


def _root(keys: list[Ed25519PrivateKey], threshold: int, version: int = 1) -> TrustRoot:
    return TrustRoot.create([k.public_key() for k in keys], threshold, version)


def _bundle(keys: list[Ed25519PrivateKey], serial: int = 1) -> PolicyBundle:
    return make_bundle(b"[policy]\n", serial, NOW + timedelta(days=30), keys, issued=NOW)


def test_round_trip_and_verify_two_of_three() -> None:
    keys = _keys(3)
    root = _root(keys, 2)
    bundle = PolicyBundle.from_bytes(_bundle(keys[:2]).to_bytes())
    assert bundle.verify(root) == {key_id(k.public_key()) for k in keys[:2]}
    assert bundle.serial == 1 and bundle.expires == NOW + timedelta(days=30)


def test_one_key_twice_does_not_meet_threshold_of_two() -> None:
    keys = _keys(2)
    bundle = _bundle(keys[:1])
    doubled = dataclasses.replace(bundle, signatures=bundle.signatures * 2)
    with pytest.raises(SignatureError, match=r"1 of 2 .*signed more than once"):
        PolicyBundle.from_bytes(doubled.to_bytes()).verify(_root(keys, 2))


def test_unsigned_bundle_is_refused() -> None:
    bundle = _bundle([])
    with pytest.raises(SignatureError, match="no signatures"):
        bundle.verify(_root(_keys(1), 1))


def test_unknown_key_is_refused_and_named() -> None:
    trusted, stranger = _keys(1), _keys(1)
    with pytest.raises(SignatureError, match=key_id(stranger[0].public_key())[:16]):
        _bundle(stranger).verify(_root(trusted, 1))


@pytest.mark.parametrize("field", ["serial", "expires", "policy"])
def test_tampering_with_a_signed_field_breaks_the_signature(field: str) -> None:
    keys = _keys(1)
    raw = json.loads(_bundle(keys).to_bytes())
    raw[field] = {"serial": 99, "expires": "2099-01-01T00:00:00Z", "policy": "W3BdCg=="}[field]
    tampered = PolicyBundle.from_bytes(json.dumps(raw).encode())
    with pytest.raises(SignatureError, match="invalid signature"):
        tampered.verify(_root(keys, 1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"type": "other"}', "'type' must be"),
        (json.dumps({"type": "onbox-policy-bundle/v1", "serial": 0}).encode(), "serial"),
    ],
)
def test_malformed_bundles_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        PolicyBundle.from_bytes(data)


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(BundleError, match="size cap"):
        PolicyBundle.from_bytes(b" " * 101, max_bytes=100)


def test_expiry_must_follow_issue_time() -> None:
    with pytest.raises(BundleError, match="not after issue time"):
        make_bundle(b"x", 1, NOW, _keys(1), issued=NOW)


def test_parse_time_accepts_dates_and_zones() -> None:
    assert parse_time("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_time("2027-01-01T02:00:00+02:00") == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("next tuesday")


def test_trust_root_round_trip_and_validation() -> None:
    keys = _keys(3)
    root = _root(keys, 2)
    again = TrustRoot.from_bytes(root.to_bytes())
    assert again.threshold == 2 and set(again.keys) == set(root.keys)
    with pytest.raises(TrustRootError, match="threshold 4"):
        _root(keys, 4)
    raw = json.loads(root.to_bytes())
    raw["keys"][0]["keyid"] = "00" * 32
    with pytest.raises(TrustRootError, match="keyid does not match"):
        TrustRoot.from_bytes(json.dumps(raw).encode())


def test_rotation_needs_old_and_new_thresholds_and_next_version() -> None:
    old_keys, new_keys = _keys(2), _keys(2)
    old = _root(old_keys, 2)
    new = _root(new_keys, 2, version=2)
    fully = new
    for key in old_keys + new_keys:
        fully = fully.with_signature(key)
    assert old.accept_successor(TrustRoot.from_bytes(fully.to_bytes())).version == 2

    only_new = new.with_signature(new_keys[0]).with_signature(new_keys[1])
    with pytest.raises(RotationError, match="by the current keys"):
        old.accept_successor(only_new)

    only_old = new.with_signature(old_keys[0]).with_signature(old_keys[1])
    with pytest.raises(RotationError, match="by its own keys"):
        old.accept_successor(only_old)

    one_old = only_new.with_signature(old_keys[0])
    with pytest.raises(RotationError, match="1 of 2"):
        old.accept_successor(one_old)

    skipped = _root(new_keys, 2, version=3)
    for key in old_keys + new_keys:
        skipped = skipped.with_signature(key)
    with pytest.raises(RotationError, match="expected exactly 2"):
        old.accept_successor(skipped)


def test_private_key_pem_round_trip(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "admin.key"
    path.write_bytes(private_key_pem(key))
    assert key_id(load_private_key(path).public_key()) == key_id(key.public_key())
