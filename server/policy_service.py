"""Keeps a running `onbox serve` on the newest signed policy.

:class:`PolicyService` runs one daemon thread that

* pulls every source at start and then every ``interval_s`` seconds;
* polls the directory sources' file stats every ``poll_s`` (0.25 s) so that a bundle
  dropped by device management is applied within a second;
* polls the store's last-good file and trust root, so that a policy applied by another
  `onbox serve` process (or by `onbox policy pull`) is picked up here too;
* notices when the policy in force expires and fails closed.

It calls ``on_change(policy)`` whenever the policy in force changes and
``on_error(message)`` once per distinct rejection reason or warning (the server shows
it once with ``window/showMessage``). Callbacks run on the service thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from onbox.classification.policy import Policy
from onbox.classification.policy_store import ApplyResult, PolicyStore
from onbox.classification.sources import PolicySource, directory_sources, pull

logger = logging.getLogger(__name__)


def _identity(policy: Policy) -> tuple[str, int, str, str]:
    return (policy.id, policy.serial, policy.sha256, policy.source)


class PolicyService:
    """Pulls, watches and reloads the signed policy for one server process."""

    def __init__(
        self,
        store: PolicyStore,
        sources: Sequence[PolicySource],
        interval_s: float,
        on_change: Callable[[Policy], None],
        on_error: Callable[[str], None],
        *,
        poll_s: float = 0.25,
    ) -> None:
        self.store = store
        self.sources = list(sources)
        self.interval_s = interval_s
        self.on_change = on_change
        self.on_error = on_error
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pull_lock = threading.Lock()
        self._reported: set[str] = set()
        self._delivered = _identity(store.current())
        self.policy = store.current()

    def start(self) -> None:
        """Start the background thread (pulls once right away)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="onbox-policy", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it (an in-flight git fetch may take a moment)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def pull_now(self) -> list[ApplyResult]:
        """Pull every source now, apply what verifies, and report changes and rejections."""
        return self._pull(self.sources)

    def _pull(self, sources: Sequence[PolicySource]) -> list[ApplyResult]:
        with self._pull_lock:
            results: list[ApplyResult] = pull(self.store, sources)
        for result in results:
            if not result.applied:
                self._report(f"policy from {result.origin} not applied: {result.reason}")
        self._check_current()
        return results

    def _report(self, message: str) -> None:
        if message in self._reported:
            return
        self._reported.add(message)
        try:
            self.on_error(message)
        except Exception:
            logger.exception("policy on_error callback failed")

    def _check_current(self) -> None:
        policy = self.store.current()
        warning = self.store.warning()
        if warning:
            self._report(warning)
        ident = _identity(policy)
        if ident == self._delivered:
            return
        self._delivered = ident
        self.policy = policy
        logger.info("policy in force is now %s serial %d", policy.id, policy.serial)
        try:
            self.on_change(policy)
        except Exception:
            logger.exception("policy on_change callback failed")

    def _run(self) -> None:
        watched = directory_sources(self.sources)
        keys = {id(s): s.watch_key() for s in watched}
        next_pull = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_pull:
                    self._pull(self.sources)
                    next_pull = time.monotonic() + self.interval_s
                dropped = []
                for source in watched:
                    key = source.watch_key()
                    if key != keys[id(source)]:
                        keys[id(source)] = key
                        dropped.append(source)
                if dropped:
                    self._pull(dropped)
                # Another process may have applied a bundle, or the policy may have
                # expired: current() is cached by file stat, so this is cheap.
                self._check_current()
            except Exception:
                logger.exception("policy service iteration failed; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()
