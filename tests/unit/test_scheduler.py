"""CompletionScheduler: supersede, debounce only bursts, cancel stops the job, slots clear.

The scheduler runs real jobs on a real one-thread executor, as the server's model thread
does. Time for burst detection comes from a clock the test sets; nothing here asserts how
long anything took.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from onbox.inference.destination import CancelToken
from onbox.server.scheduler import CANCEL_REQUEST, SUPERSEDED, CompletionScheduler, Job

URI = "file:///w/a.py"

#: A debounce no test can sit out: a request that sleeps it never finishes in time.
FOREVER_MS = 600_000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Jobs that record what ran; ``blocking`` ones run until their token is cancelled."""

    def __init__(self) -> None:
        self.prepared: list[str] = []
        self.ran: list[str] = []
        self.started = threading.Event()
        self.stopped: list[tuple[str, str]] = []  # (name, token reason) once a job returned

    def prepare(self, name: str, *, blocking: bool = False) -> Callable[[], Job[str]]:
        def prepare() -> Job[str]:
            self.prepared.append(name)

            def job(token: CancelToken) -> str:
                self.ran.append(name)
                self.started.set()
                if blocking:
                    assert token.wait(10), "the job was never cancelled"
                self.stopped.append((name, token.reason))
                return name

            return job

        return prepare


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-model")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


async def until(event: threading.Event) -> None:
    """Wait (off the loop) until a job thread sets ``event``."""
    assert await asyncio.to_thread(event.wait, 10), "the job never started"


async def settle() -> None:
    """Let every ready callback on the loop run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_lone_request_runs_at_once_and_clears_its_slot(
    executor: ThreadPoolExecutor,
) -> None:
    """A request with no recent neighbour is not debounced, and leaves no slot behind."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    jobs = Recorder()
    idle: list[str] = []
    # A debounce it could never sit out within the timeout: finishing proves it did not wait.
    result = await asyncio.wait_for(
        scheduler.run(
            URI, jobs.prepare("a"), debounce_ms=FOREVER_MS, on_idle=lambda: idle.append("idle")
        ),
        timeout=10,
    )
    assert result == "a"
    assert jobs.ran == ["a"]
    assert scheduler.inflight(URI) is None
    await settle()
    assert idle == ["idle"]


async def test_request_soon_after_another_waits_for_the_debounce(
    executor: ThreadPoolExecutor,
) -> None:
    """A request within ``debounce_ms`` of the last one does not prepare until it elapses."""
    clock = Clock()
    scheduler = CompletionScheduler(executor, clock=clock)
    jobs = Recorder()
    assert await scheduler.run(URI, jobs.prepare("first"), debounce_ms=FOREVER_MS) == "first"

    clock.now += 0.05  # 50 ms later: a burst
    task = asyncio.ensure_future(scheduler.run(URI, jobs.prepare("second"), debounce_ms=FOREVER_MS))
    await settle()
    assert not task.done() and jobs.prepared == ["first"]
    assert scheduler.inflight(URI) is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert jobs.prepared == ["first"] and scheduler.inflight(URI) is None


async def test_request_after_the_debounce_window_is_not_delayed(
    executor: ThreadPoolExecutor,
) -> None:
    """Once ``debounce_ms`` has passed since the last request, the next is a lone one again."""
    clock = Clock()
    scheduler = CompletionScheduler(executor, clock=clock)
    jobs = Recorder()
    await scheduler.run(URI, jobs.prepare("first"), debounce_ms=200)
    clock.now += 0.5
    result = await asyncio.wait_for(
        scheduler.run(URI, jobs.prepare("second"), debounce_ms=200), timeout=10
    )
    assert result == "second" and jobs.ran == ["first", "second"]


async def test_other_documents_do_not_make_a_burst(executor: ThreadPoolExecutor) -> None:
    """Bursts and supersession are per key: another document's request is independent."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    jobs = Recorder()
    await scheduler.run(URI, jobs.prepare("a"), debounce_ms=FOREVER_MS)
    result = await asyncio.wait_for(
        scheduler.run("file:///w/b.py", jobs.prepare("b"), debounce_ms=FOREVER_MS), timeout=10
    )
    assert result == "b"


async def test_superseded_while_debouncing_answers_none_and_never_runs(
    executor: ThreadPoolExecutor,
) -> None:
    """A newer request for the document makes a debouncing one answer None unprepared."""
    clock = Clock()
    scheduler = CompletionScheduler(executor, clock=clock)
    jobs = Recorder()
    await scheduler.run(URI, jobs.prepare("first"), debounce_ms=20)
    clock.now += 0.001
    older = asyncio.ensure_future(scheduler.run(URI, jobs.prepare("older"), debounce_ms=20))
    await settle()
    token = scheduler.inflight(URI)
    assert token is not None and not token.cancelled
    newer = asyncio.ensure_future(scheduler.run(URI, jobs.prepare("newer"), debounce_ms=20))
    await settle()
    assert token.cancelled and token.reason == SUPERSEDED
    assert await asyncio.wait_for(older, timeout=10) is None
    assert await asyncio.wait_for(newer, timeout=10) == "newer"
    assert "older" not in jobs.prepared and "older" not in jobs.ran
    assert scheduler.inflight(URI) is None


async def test_superseding_a_running_job_stops_it_and_keeps_the_newer_slot(
    executor: ThreadPoolExecutor,
) -> None:
    """A generating request is told to stop ("superseded"); the slot then belongs to the newer."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    jobs = Recorder()
    running = asyncio.ensure_future(
        scheduler.run(URI, jobs.prepare("running", blocking=True), debounce_ms=1)
    )
    await until(jobs.started)
    jobs.started.clear()
    newer = asyncio.ensure_future(
        scheduler.run(URI, jobs.prepare("newer", blocking=True), debounce_ms=1)
    )
    assert await asyncio.wait_for(running, timeout=10) == "running"
    assert jobs.stopped == [("running", SUPERSEDED)]
    # The older request finishing must not clear the slot the newer one holds.
    slot = scheduler.inflight(URI)
    assert slot is not None and not slot.cancelled
    await until(jobs.started)  # the newer job runs once the model thread is free
    assert scheduler.inflight(URI) is slot
    scheduler.cancel_all("shutdown")
    assert await asyncio.wait_for(newer, timeout=10) == "newer"
    assert scheduler.inflight(URI) is None


async def test_cancel_request_during_the_job_stops_it_and_waits_for_it(
    executor: ThreadPoolExecutor,
) -> None:
    """$/cancelRequest cancels the token and re-raises only once the job has returned."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    jobs = Recorder()
    idle: list[str] = []
    task = asyncio.ensure_future(
        scheduler.run(
            URI,
            jobs.prepare("long", blocking=True),
            debounce_ms=0,
            on_idle=lambda: idle.append("idle"),
        )
    )
    await until(jobs.started)
    token = scheduler.inflight(URI)
    assert token is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    assert token.cancelled and token.reason == CANCEL_REQUEST
    # The job had returned before the cancellation reached the caller: the model is free.
    assert jobs.stopped == [("long", CANCEL_REQUEST)]
    assert scheduler.inflight(URI) is None
    await settle()
    assert idle == ["idle"]
    # ... and the next request is served.
    assert (
        await asyncio.wait_for(scheduler.run(URI, jobs.prepare("next"), debounce_ms=0), timeout=10)
        == "next"
    )


async def test_prepare_declining_answers_none_and_clears_the_slot(
    executor: ThreadPoolExecutor,
) -> None:
    """``prepare`` returning None (document closed, no model) answers None and runs nothing."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    assert await scheduler.run(URI, lambda: None, debounce_ms=0) is None
    assert scheduler.inflight(URI) is None


async def test_a_failing_job_raises_and_clears_the_slot(executor: ThreadPoolExecutor) -> None:
    """An exception from the job reaches the caller; the slot is still cleared."""
    scheduler = CompletionScheduler(executor, clock=Clock())

    def prepare() -> Job[str]:
        def job(token: CancelToken) -> str:
            raise RuntimeError("engine broke")

        return job

    with pytest.raises(RuntimeError, match="engine broke"):
        await scheduler.run(URI, prepare, debounce_ms=0)
    assert scheduler.inflight(URI) is None


async def test_forget_and_cancel_all_cancel_the_tokens_in_flight(
    executor: ThreadPoolExecutor,
) -> None:
    """Closing a document cancels its request ("closed"); shutdown cancels every one."""
    scheduler = CompletionScheduler(executor, clock=Clock())
    jobs = Recorder()
    closed = asyncio.ensure_future(
        scheduler.run(URI, jobs.prepare("closed", blocking=True), debounce_ms=0)
    )
    await until(jobs.started)
    scheduler.forget(URI, "closed")
    assert await asyncio.wait_for(closed, timeout=10) == "closed"
    assert jobs.stopped == [("closed", "closed")]

    jobs.started.clear()
    other = asyncio.ensure_future(
        scheduler.run("file:///w/b.py", jobs.prepare("b", blocking=True), debounce_ms=0)
    )
    await until(jobs.started)
    scheduler.cancel_all("shutdown")
    assert await asyncio.wait_for(other, timeout=10) == "b"
    assert jobs.stopped[-1] == ("b", "shutdown")
