"""A circuit breaker that keeps a failing destination out of the route for a while.

After a destination fails, routing skips it until its cool-down has passed; every
consecutive failure doubles the cool-down (up to a ceiling), and a ``Retry-After`` from
the service is honoured when it asks for longer. Once the cool-down has passed the
destination is *half-open*: the next request may try it, and a success closes the
circuit again.

The breaker only keeps state; :class:`onbox.inference.routing.Router` records the
outcomes. It raises no errors of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Cool-down after the first failure, in seconds.
DEFAULT_COOLDOWN = 15.0
#: The longest cool-down, however often a destination fails.
DEFAULT_MAX_COOLDOWN = 300.0


@dataclass
class BreakerState:
    """What the breaker knows about one destination."""

    failures: int = 0  # consecutive failures
    open_until: float = 0.0  # clock value until which the destination is skipped
    last_error: str = ""


class CircuitBreaker:
    """Tracks consecutive failures per destination name; thread-safe.

    ``clock`` defaults to :func:`time.monotonic`; tests pass their own to step time.
    """

    def __init__(
        self,
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        max_retry_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("need 0 < cooldown <= max_cooldown")
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._max_retry_after = max_retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}

    def healthy(self, name: str) -> bool:
        """Whether ``name`` may be tried now (closed or half-open)."""
        with self._lock:
            state = self._states.get(name)
            return state is None or self._clock() >= state.open_until

    def retry_in(self, name: str) -> float:
        """Seconds until ``name`` may be tried again (0 when it may be tried now)."""
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return 0.0
            return max(0.0, float(state.open_until - self._clock()))

    def record_failure(
        self, name: str, error: str = "", *, retry_after: float | None = None
    ) -> float:
        """Open the circuit for ``name``; return the cool-down applied, in seconds."""
        with self._lock:
            state = self._states.setdefault(name, BreakerState())
            state.failures += 1
            backoff = min(self._cooldown * 2.0 ** min(state.failures - 1, 32), self._max_cooldown)
            if retry_after is not None and retry_after > 0:
                backoff = max(backoff, min(retry_after, self._max_retry_after))
            state.open_until = self._clock() + backoff
            state.last_error = error
        logger.info("destination %s kept out for %.1fs after: %s", name, backoff, error)
        return backoff

    def record_success(self, name: str) -> None:
        """Close the circuit for ``name``."""
        with self._lock:
            if self._states.pop(name, None) is not None:
                logger.info("destination %s is healthy again", name)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per destination with a failure on record: failures, seconds left, last error."""
        with self._lock:
            now = self._clock()
            return {
                name: {
                    "failures": s.failures,
                    "retryIn": max(0.0, s.open_until - now),
                    "lastError": s.last_error,
                }
                for name, s in self._states.items()
            }
