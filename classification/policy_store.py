"""The workstation's policy store: verifies signed bundles and keeps the last good one.

:class:`PolicyStore` lives under ``onbox.paths.data_dir()/"policy"``::

    last-good.onbox-policy   the bundle in force (its serial is the rollback floor)
    state.json               where it came from, and the last rejection (informational)
    apply.lock               a file lock: several `onbox serve` processes share the store

``apply(bundle_bytes, origin)`` admits a bundle only if it is under the size cap,
well-formed, signed by a threshold of distinct trust-root keys, newer than the last
applied serial (the same serial with the same signed content is a no-op; with other
content it is rejected), not expired, and its policy parses and validates. The bundle
is then written atomically (temp file, fsync, ``os.replace``). Every rejection keeps
the last good policy in force and is journaled (``policy-rejected``) with its reason.

``current()`` re-verifies the persisted bundle against the trust root, so a policy the
developer writes into the data dir is not trusted; without a trust root, or once the
applied policy has expired, it answers the built-in fail-closed policy with a reason.

Errors come from :mod:`onbox.classification.trust` (``DistributionError`` tree); the
store turns them into :class:`ApplyResult` reasons rather than raising.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock

from onbox import paths
from onbox.classification.bundle import MAX_BUNDLE_BYTES, PolicyBundle, format_time, parse_time
from onbox.classification.policy import Policy, PolicyError, builtin_policy, parse_policy
from onbox.classification.trust import BundleError, DistributionError, TrustRoot

logger = logging.getLogger(__name__)

LAST_GOOD = "last-good.onbox-policy"


class JournalLike(Protocol):
    """What the store needs from :func:`onbox.audit.open_journal`'s journal."""

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = ...) -> object:
        """Append one entry."""


@dataclass(frozen=True)
class ApplyResult:
    """What happened to one bundle offered to :meth:`PolicyStore.apply`."""

    applied: bool  # the bundle is (now or already) the one in force
    changed: bool  # the policy in force changed because of this call
    serial: int | None  # the bundle's serial, when it could be read
    reason: str  # what happened, in words a person can act on
    origin: str = ""  # where the bundle came from
    rejected: bool = False  # a check failed (journaled as policy-rejected)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping for the CLI and onbox/health."""
        return dataclasses.asdict(self)


class _Stop(Exception):
    """Internal: :meth:`PolicyStore._check` stops with a reason (never leaves the module)."""

    def __init__(self, reason: str, serial: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.serial = serial


class _Rejected(_Stop):
    """A check failed."""


class _AlreadyApplied(_Stop):
    """The bundle is the one in force already."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fail_closed_policy(reason: str) -> Policy:
    """The built-in fail-closed policy, its ``source`` carrying ``reason``."""
    return dataclasses.replace(builtin_policy(), source=f"<fail-closed: {reason}>")


class PolicyStore:
    """Verified last-good policy on disk, shared safely by several processes."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        trust_root_path: Path | None = None,
        journal: JournalLike | None = None,
        clock: Callable[[], datetime] = _utcnow,
        max_bundle_bytes: int = MAX_BUNDLE_BYTES,
    ) -> None:
        self.directory = directory or paths.data_dir() / "policy"
        self.trust_root_path = trust_root_path or paths.trust_root_path()
        self.journal = journal
        self.clock = clock
        self.max_bundle_bytes = max_bundle_bytes
        self.last_good_path = self.directory / LAST_GOOD
        self.state_path = self.directory / "state.json"
        self._lock = FileLock(str(self.directory / "apply.lock"))
        self._mutex = threading.Lock()
        self._cache_key: object = None
        self._cache: tuple[Policy | None, PolicyBundle | None, str | None] = (None, None, None)

    # ----------------------------------------------------------------- reading
    def trust_root(self) -> TrustRoot:
        """The installed trust root; raises :class:`TrustRootError` if absent or malformed."""
        return TrustRoot.load(self.trust_root_path)

    def fingerprint(self) -> object:
        """Changes whenever the persisted last-good bundle or the trust root changes."""
        return (_stat_key(self.last_good_path), _stat_key(self.trust_root_path))

    def _load(self) -> tuple[Policy | None, PolicyBundle | None, str | None]:
        """(verified policy, its bundle, why none) for the files on disk, cached by stat."""
        key = self.fingerprint()
        with self._mutex:
            if key == self._cache_key:
                return self._cache
        result = self._load_uncached()
        with self._mutex:
            self._cache_key, self._cache = key, result
        return result

    def _load_uncached(self) -> tuple[Policy | None, PolicyBundle | None, str | None]:
        try:
            root = self.trust_root()
        except DistributionError as exc:
            return None, None, f"no usable trust root ({exc})"
        try:
            data = self.last_good_path.read_bytes()
        except FileNotFoundError:
            return None, None, "no signed policy has been applied yet"
        except OSError as exc:
            return None, None, f"cannot read the last good policy {self.last_good_path}: {exc}"
        try:
            bundle = PolicyBundle.from_bytes(data, self.max_bundle_bytes)
            bundle.verify(root)
            policy = parse_policy(bundle.policy, f"policy bundle serial {bundle.serial}")
        except (DistributionError, PolicyError) as exc:
            return None, None, f"the stored policy no longer verifies: {exc}"
        except Exception as exc:  # a parser bug must fail closed, not crash the server
            logger.exception("unexpected error loading %s", self.last_good_path)
            return None, None, f"the stored policy could not be loaded: {exc!r}"
        policy = dataclasses.replace(policy, serial=bundle.serial, expires=bundle.expires)
        return policy, bundle, None

    def current(self) -> Policy:
        """The policy in force: the verified last good one, or fail-closed with a reason."""
        policy, _bundle, why = self._load()
        if policy is None:
            return fail_closed_policy(why or "no policy")
        expired = self._expiry_warning(policy)
        if expired:
            return fail_closed_policy(expired)
        return policy

    def _expiry_warning(self, policy: Policy) -> str | None:
        if policy.expires is not None and self.clock() >= policy.expires:
            return (
                f"policy {policy.id} serial {policy.serial} expired at"
                f" {format_time(policy.expires)} and no newer signed policy could be fetched;"
                " every file is restricted and on-box only until one is"
            )
        return None

    def warning(self) -> str | None:
        """Why :meth:`current` is failing closed, or ``None`` when a signed policy is in force."""
        policy, _bundle, why = self._load()
        if policy is None:
            return why
        return self._expiry_warning(policy)

    def verified_policy(self) -> Policy | None:
        """The verified last-good policy even after it expired, or ``None``.

        For settings that must not flip when a policy lapses, such as where the journal
        lives: an expired policy fails closed for egress, but its journal stays put.
        """
        return self._load()[0]

    def current_bundle(self) -> PolicyBundle | None:
        """The verified bundle in force (expired or not), or ``None``."""
        return self._load()[1]

    def state(self) -> dict[str, Any]:
        """The informational state file (origin of the last apply, last rejection)."""
        try:
            raw = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    # ---------------------------------------------------------------- applying
    def apply(self, bundle_bytes: bytes, origin: str) -> ApplyResult:
        """Verify ``bundle_bytes`` and make it the policy in force if every check passes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                bundle, policy = self._check(bundle_bytes)
            except _AlreadyApplied as done:
                return ApplyResult(True, False, done.serial, done.reason, origin)
            except _Rejected as rejection:
                result = ApplyResult(
                    False, False, rejection.serial, rejection.reason, origin, rejected=True
                )
                self._record_rejection(result, bundle_bytes)
                return result
            atomic_write(self.last_good_path, bundle_bytes)
            # Under the lock nobody else can replace the file: prime the cache so the
            # next current() does not parse the policy a second time.
            in_force = dataclasses.replace(policy, serial=bundle.serial, expires=bundle.expires)
            with self._mutex:
                self._cache_key = self.fingerprint()
                self._cache = (in_force, bundle, None)
            state = self.state()
            state.pop("last_rejection", None)  # a later success: the old rejection is history
            state["applied"] = {
                "serial": bundle.serial,
                "origin": origin,
                "at": format_time(self.clock()),
                "policy_id": policy.id,
            }
            atomic_write(self.state_path, json.dumps(state, indent=2).encode())
        logger.info("applied policy %s serial %d from %s", policy.id, bundle.serial, origin)
        self._journal(
            "policy-applied",
            {
                "subject": "policy-bundle",
                "policy_id": policy.id,
                "serial": bundle.serial,
                "policy_sha256": bundle.policy_sha256,
                "expires": format_time(bundle.expires),
                "issued": format_time(bundle.issued),
                "origin": origin,
                "signers": sorted(s.keyid for s in bundle.signatures),
            },
        )
        return ApplyResult(True, True, bundle.serial, f"applied serial {bundle.serial}", origin)

    def _check(self, data: bytes) -> tuple[PolicyBundle, Policy]:
        """Run every check in order; raises :class:`_Rejected` or :class:`_AlreadyApplied`."""
        try:
            bundle = PolicyBundle.from_bytes(data, self.max_bundle_bytes)
        except BundleError as exc:
            raise _Rejected(str(exc), None) from None
        try:
            bundle.verify(self.trust_root())
        except DistributionError as exc:
            raise _Rejected(str(exc), bundle.serial) from None
        serial = bundle.serial
        last = self._last_good_unverified()
        if last is not None and serial == last.serial:
            if bundle.signed_payload() == last.signed_payload():
                raise _AlreadyApplied(f"serial {serial} already applied", serial)
            raise _Rejected(
                f"serial {serial} is already applied with different content;"
                " publish the change with a higher serial",
                serial,
            )
        if last is not None and serial < last.serial:
            raise _Rejected(
                f"rollback refused: serial {serial} is older than the applied serial {last.serial}",
                serial,
            )
        if bundle.is_expired(self.clock()):
            raise _Rejected(
                f"bundle serial {serial} expired at {format_time(bundle.expires)};"
                " ask an admin to re-sign it with a later --expires",
                serial,
            )
        try:
            policy = parse_policy(bundle.policy, f"policy bundle serial {serial}")
        except PolicyError as exc:
            raise _Rejected(f"policy is invalid: {exc}", serial) from None
        except Exception as exc:  # a parser bug is a rejection, never a half-applied policy
            logger.exception("unexpected error parsing bundle serial %d", serial)
            raise _Rejected(f"policy is invalid (parser error {exc!r})", serial) from None
        return bundle, policy

    def rotate_trust_root(self, root_bytes: bytes, origin: str) -> ApplyResult:
        """Replace the trust root with a valid successor (see :meth:`TrustRoot.accept_successor`).

        Without an installed trust root this installs ``root_bytes`` as the first one
        (whoever can write the trust-root path is trusted to place it).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                new = TrustRoot.from_bytes(root_bytes, f"trust root from {origin}")
                if self.trust_root_path.exists():
                    self.trust_root().accept_successor(new)
            except DistributionError as exc:
                result = ApplyResult(False, False, None, str(exc), origin, rejected=True)
                self._record_rejection(result, root_bytes, subject="trust-root")
                return result
            atomic_write(self.trust_root_path, root_bytes)
        self._journal(
            "policy-applied",
            {
                "subject": "trust-root",
                "version": new.version,
                "threshold": new.threshold,
                "keys": sorted(new.keys),
                "origin": origin,
            },
        )
        return ApplyResult(
            True, True, new.version, f"trust root version {new.version} installed", origin
        )

    def _last_good_unverified(self) -> PolicyBundle | None:
        """The persisted bundle, for its serial floor (signatures were checked when applied)."""
        try:
            return PolicyBundle.from_bytes(self.last_good_path.read_bytes(), 1 << 30)
        except FileNotFoundError:
            return None
        except (OSError, BundleError) as exc:
            logger.warning("ignoring unreadable last good policy %s: %s", self.last_good_path, exc)
            return None

    def _record_rejection(
        self, result: ApplyResult, data: bytes, subject: str = "policy-bundle"
    ) -> None:
        digest = hashlib.sha256(data).hexdigest()
        state = self.state()
        previous = state.get("last_rejection") or {}
        entry = {
            "subject": subject,
            "reason": result.reason,
            "origin": result.origin,
            "serial": result.serial,
            "bundle_sha256": digest,
            "at": format_time(self.clock()),
        }
        state["last_rejection"] = entry
        try:
            atomic_write(self.state_path, json.dumps(state, indent=2).encode())
        except OSError as exc:
            logger.error("cannot record the rejection in %s: %s", self.state_path, exc)
        logger.warning("rejected policy bundle from %s: %s", result.origin, result.reason)
        # A source keeps offering the same bad bundle every pull: journal it once.
        if previous.get("bundle_sha256") == digest and previous.get("reason") == result.reason:
            return
        self._journal("policy-rejected", {k: v for k, v in entry.items() if k != "at"})

    def _journal(self, kind: str, body: dict[str, Any]) -> None:
        if self.journal is None:
            return
        try:
            self.journal.append(kind, body, durable=True)
        except Exception as exc:  # the journal's own errors must not undo a policy decision
            logger.error("could not journal %s: %s", kind, exc)


def describe_policy_state(store: PolicyStore | None = None) -> dict[str, Any]:
    """What `onbox doctor` and onbox/health show about signed policy, JSON-ready."""
    store = store or PolicyStore()
    root_info: dict[str, Any] = {"path": str(store.trust_root_path), "present": False}
    try:
        root = store.trust_root()
        root_info.update(
            present=True, version=root.version, threshold=root.threshold, keys=sorted(root.keys)
        )
    except DistributionError as exc:
        root_info.update(present=store.trust_root_path.exists(), error=str(exc))
    policy = store.current()
    bundle = store.current_bundle()
    state = store.state()
    return {
        "trust_root": root_info,
        "store": str(store.directory),
        "policy": {
            "id": policy.id,
            "serial": policy.serial,
            "expires": format_time(policy.expires) if policy.expires else None,
            "issued": format_time(bundle.issued) if bundle else None,
            "source": policy.source,
            "origin": (state.get("applied") or {}).get("origin"),
        },
        "fail_closed": store.warning() is not None,
        "warning": store.warning(),
        "last_rejection": _unresolved(state),
    }


def _unresolved(state: dict[str, Any]) -> dict[str, Any] | None:
    """The last rejection, unless a policy was applied after it (older state files)."""
    rejection = state.get("last_rejection")
    applied = state.get("applied") or {}
    if not isinstance(rejection, dict):
        return None
    try:
        if parse_time(str(applied["at"])) > parse_time(str(rejection["at"])):
            return None
    except (KeyError, ValueError):
        pass
    return rejection
