"""Checking a large upload's entries on every core: the collector's hot loop.

An Ed25519 signature check costs 80-130 µs of CPU on this project's 2 GHz server cores
(libsodium through PyNaCl; OpenSSL through ``cryptography`` costs about twice that),
some 70% of an entry's whole cost, so one process checks 5,000-8,000 entries a second.
libsodium and OpenSSL both let other threads run while they verify, but the parsing,
hashing and exact-form check around each signature hold the GIL: on 2 idle cores two
threads checked entries 1.5x as fast as one, two processes 1.7x
(``bench/bench_collector.py`` measures both side by side), so the checks run in
processes.

:class:`EntryVerifier` splits an upload of at least ``min_parallel`` entries into one run
per worker process (a pool started once per collector process and reused), each run
checked by :func:`onbox.collector.chain.check_run` exactly as in one pass, and joins the
runs with :func:`~onbox.collector.chain.link_runs`, which names the same first bad entry
as one pass would. Smaller uploads, a one-core host, a pool that cannot start and a pool
that broke (a worker was killed) are checked in the calling process: every entry is
checked either way, only the place differs. Workers are spawned (not forked: the
collector runs threads), so a script calling :func:`~onbox.collector.ingest.ingest`
needs the usual ``if __name__ == "__main__":`` guard, else it checks in-process; they
exit when their collector is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from onbox.collector.chain import (
    BadEntry,
    KeySpan,
    check_run,
    from_portable,
    link_runs,
    portable,
)
from onbox.collector.store import EntryRow

logger = logging.getLogger(__name__)

#: below this many entries a worker round trip costs more than it saves
MIN_PARALLEL = 256


def default_workers() -> int:
    """One worker process per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class EntryVerifier:
    """Checks uploads' entries, spread over ``workers`` processes when they are many."""

    def __init__(self, workers: int | None = None, *, min_parallel: int = MIN_PARALLEL) -> None:
        self.workers = default_workers() if workers is None else max(1, workers)
        self.min_parallel = max(1, min_parallel)
        self._pool: ProcessPoolExecutor | None = None
        self._unavailable = False
        self._lock = threading.Lock()

    def check(
        self, device: str, lines: Sequence[str], first_seq: int, spans: Sequence[KeySpan]
    ) -> list[EntryRow]:
        """The rows of ``lines`` (seqs ``first_seq``…), all checked; raises
        :class:`~onbox.collector.errors.UploadRejected` (422) naming the first bad entry."""
        pool = self.start() if len(lines) >= self.min_parallel else None
        if pool is None:
            return link_runs([check_run(device, lines, first_seq, spans)])
        try:
            size = -(-len(lines) // self.workers)
            plain = portable(spans)
            futures = [
                pool.submit(_check_portable, device, lines[i : i + size], first_seq + i, plain)
                for i in range(0, len(lines), size)
            ]
            return link_runs(_results(futures))
        except BrokenProcessPool:
            logger.warning("an entry-check worker died; checking this upload in-process")
            self._discard()
            return link_runs([check_run(device, lines, first_seq, spans)])

    def start(self) -> ProcessPoolExecutor | None:
        """The worker pool, started (and its workers' imports done) on first use; None
        where worker processes cannot start here (then every check runs in-process)."""
        if self.workers <= 1:
            return None
        with self._lock:
            if self._pool is None and not self._unavailable:
                # spawn, not fork: the collector runs threads (uvicorn's pool, database
                # connections) that a forked child would inherit mid-operation
                context = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=context,
                    initializer=_end_with_parent,
                    initargs=(os.getpid(),),
                )
                try:
                    for warm in [pool.submit(_ready) for _ in range(self.workers)]:
                        warm.result()
                except BrokenProcessPool:
                    # e.g. a script without the `if __name__ == "__main__":` guard that
                    # spawned processes need: slower, never less checked
                    logger.error(
                        "entry-check worker processes could not start; checking entries "
                        "in-process (a script calling ingest needs an "
                        "`if __name__ == '__main__':` guard)"
                    )
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._unavailable = True
                    return None
                self._pool = pool
            return self._pool

    def _discard(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def close(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _results(
    futures: list[Future[tuple[list[EntryRow], BadEntry | None]]],
) -> list[tuple[list[EntryRow], BadEntry | None]]:
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:  # after a bad run, the later ones are not needed
            future.cancel()


def _check_portable(
    device: str, lines: Sequence[str], first_seq: int, plain: Sequence[tuple[int, str, str, str]]
) -> tuple[list[EntryRow], BadEntry | None]:
    return check_run(device, lines, first_seq, from_portable(plain))


def _ready() -> bool:
    return True


def _end_with_parent(parent: int) -> None:
    """Exit when the collector process is gone (SIGKILL leaves the workers waiting on a
    queue nobody writes to); a thread, since a worker may be busy checking a run."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="onbox-parent-watch", daemon=True).start()


#: worker processes of each collector process's verifier (default: one per core);
#: ``onbox collector serve --workers N`` shares the cores out among its N processes
CHECK_WORKERS_ENV = "ONBOX_COLLECTOR_CHECK_WORKERS"

_shared: EntryVerifier | None = None
_shared_lock = threading.Lock()


def shared_verifier() -> EntryVerifier:
    """This process's verifier (one worker pool per collector process, made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            configured = os.environ.get(CHECK_WORKERS_ENV, "")
            _shared = EntryVerifier(int(configured) if configured.isdigit() else None)
        return _shared
