"""When a completion runs: supersede, debounce, cancel — without a language server.

:class:`CompletionScheduler` decides which completion requests reach the model and when.
It knows nothing of pygls or of documents; it takes a key (the document's URI), the
debounce in milliseconds, and two plain callables from the handler:

- ``prepare()`` runs on the event loop once the request has survived its debounce. It
  reads what the request needs *now* (the document's current text) and returns the
  blocking job, or ``None`` to answer nothing.
- the job, ``job(token)``, runs on the model executor. It must poll ``token`` (every
  token of a generation) and stop soon after it is cancelled.

The rules, per key:

- At most one request is in flight. A newer request cancels the older one's token
  ("superseded"): a request still debouncing answers ``None`` and never runs its job;
  one already generating stops within a token.
- A request that follows another closely (one is still in flight, or the last began
  less than ``debounce_ms`` ago) waits ``debounce_ms`` first, so a typing burst starts
  few generations. A lone request is not delayed.
- When the request's own task is cancelled (``$/cancelRequest``), the token is cancelled
  and the scheduler waits for the job to stop (within one token) before re-raising, so
  the model is free for the next request.
- When the request ends, its in-flight slot is cleared (unless a newer request owns it)
  and ``on_idle`` is called soon after, once the answer is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

from onbox.inference.destination import CancelToken

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The work that runs on the model executor; it polls the token.
Job = Callable[[CancelToken], T]

#: Once a cancelled job has been asked to stop, wait at most this long for it: a job
#: polls its token every token, so this is a bound for a wedged engine, not a delay.
CANCEL_WAIT_S = 30.0

#: Reasons a token is cancelled with (they end up in logs and generation statistics).
SUPERSEDED = "superseded"
CANCEL_REQUEST = "$/cancelRequest"


@dataclass
class _Slot:
    """One key's scheduling state."""

    inflight: CancelToken | None = None
    last_request_at: float = float("-inf")


class CompletionScheduler:
    """Runs completion jobs on one executor: one live request per key, bursts debounced."""

    def __init__(
        self,
        executor: Executor,
        *,
        clock: Callable[[], float] = time.monotonic,
        cancel_wait_s: float = CANCEL_WAIT_S,
    ) -> None:
        """Schedule onto ``executor`` (the model thread); ``clock`` measures bursts."""
        self._executor = executor
        self._clock = clock
        self._cancel_wait_s = cancel_wait_s
        self._slots: dict[str, _Slot] = {}

    def inflight(self, key: str) -> CancelToken | None:
        """The token of the request in flight for ``key``, if any."""
        slot = self._slots.get(key)
        return slot.inflight if slot is not None else None

    def forget(self, key: str, reason: str) -> None:
        """Cancel ``key``'s request in flight (with ``reason``) and drop its history."""
        slot = self._slots.pop(key, None)
        if slot is not None and slot.inflight is not None:
            slot.inflight.cancel(reason)

    def cancel_all(self, reason: str) -> None:
        """Cancel every request in flight (``shutdown``)."""
        for slot in self._slots.values():
            if slot.inflight is not None:
                slot.inflight.cancel(reason)

    async def run(
        self,
        key: str,
        prepare: Callable[[], Job[T] | None],
        *,
        debounce_ms: float,
        on_idle: Callable[[], None] | None = None,
    ) -> T | None:
        """Run one request for ``key``; ``None`` if it was superseded or ``prepare`` declined.

        Raises :class:`asyncio.CancelledError` when the calling task is cancelled, after
        the job (if it started) has stopped. Exceptions from ``prepare`` or the job
        propagate.
        """
        slot = self._slots.setdefault(key, _Slot())
        token = CancelToken()
        now = self._clock()
        previous = slot.inflight
        burst = previous is not None or (now - slot.last_request_at) * 1000 < debounce_ms
        if previous is not None:
            previous.cancel(SUPERSEDED)
        slot.inflight = token
        slot.last_request_at = now
        try:
            if burst and debounce_ms > 0:
                await asyncio.sleep(debounce_ms / 1000)
                if token.cancelled:
                    return None
            job = prepare()
            if job is None:
                return None
            return await self._execute(job, token)
        except asyncio.CancelledError:
            token.cancel(CANCEL_REQUEST)
            raise
        finally:
            if slot.inflight is token:
                slot.inflight = None
                if on_idle is not None:
                    # After the answer is on its way: the editor waits for it, not for this.
                    asyncio.get_running_loop().call_soon(on_idle)

    async def _execute(self, job: Job[T], token: CancelToken) -> T:
        """Run ``job`` on the executor; on cancellation, stop it and wait until it has."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, job, token)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop the token loop, and re-raise once it has stopped (within one token) so
            # the model is free for the next request.
            token.cancel(CANCEL_REQUEST)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, timeout=self._cancel_wait_s)
            raise
