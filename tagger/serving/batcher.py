"""Micro-batching for the server: requests that arrive together are tagged in one engine call.

A request is one `Job` with a size in tokens. `Batcher.submit` queues it and waits for its result. One
task on the event loop takes queued jobs in arrival order into a batch, which closes when it holds
`max_tokens` tokens or when `max_wait` seconds have passed since its first job was taken (0: take what is
queued, no waiting), and hands the batch to `handler` in a thread of its own: the event loop goes on
reading requests while the engine works, and they form the next batch. Under load the batches grow by
themselves (whatever queued while the engine ran goes in the next call). The wait only applies when more
than one job is queued: a lone job never waits for companions, so an idle server answers at once.

A small job (`submit(..., inline=True)`: the caller vouches that it costs about a millisecond) that finds
the engine idle, the queue empty and no other job arriving in the same turn of the loop is run at once on
the event loop, without the two thread hops (one client's latency, issue 33 section 7). The loop is blocked
only for that long; under load the engine is busy or jobs arrive together, and every job is queued.

The queue is bounded (`max_queue` jobs): a full queue refuses at once (QueueFull, the server's 503), so
memory stays bounded however fast clients send. A job that waits past its deadline raises TimeoutError
(the server's 504); if it was still queued it is dropped, never tagged; if it was in the engine, its result
is dropped (the handler may also stop work on it: the server's jobs carry their deadline).

No import of the server stack here: anything with an event loop can use it (the Ray Serve deployment uses
`@serve.batch` instead).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """The batcher's queue holds `max_queue` jobs: the caller should retry later."""


@dataclass(eq=False)
class Job:
    """One request's work: `payload` for the handler, `size` in tokens (what the budget counts)."""

    payload: Any
    size: int
    future: asyncio.Future = field(repr=False, default=None)  # type: ignore[assignment]
    queued_at: float = 0.0
    dropped: bool = False  # timed out while queued: not tagged


@dataclass
class BatchStats:
    """What one engine call did, for metrics: jobs in it, their tokens, seconds in the handler."""

    jobs: int
    tokens: int
    seconds: float


class Batcher:
    """Queues jobs and runs them in batches through `handler(payloads) -> results` (same order and length;
    a result that is an Exception is raised to that job's caller) in one worker thread.

    `on_batch(BatchStats)` is called on the event loop after each batch (metrics)."""

    def __init__(self, handler: Callable[[list], Sequence], max_tokens: int = 4096, max_wait: float = 0.0,
                 max_queue: int = 1024, on_batch: Callable[[BatchStats], None] = lambda _: None):
        self.handler, self.max_tokens, self.max_wait, self.max_queue = handler, max_tokens, max_wait, max_queue
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._queued_tokens = 0
        self._arrived: asyncio.Event | None = None  # set when the queue is not empty
        self._full: asyncio.Event | None = None  # set when the queue holds max_tokens tokens or more
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.running = 0  # jobs in the engine now
        self._arriving = 0  # small jobs deciding whether they are alone (see submit)

    @property
    def depth(self) -> int:
        """Jobs queued, not yet in the engine."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching task on the running event loop (the server's startup)."""
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tagger-engine")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop batching (after the server has drained its requests): queued jobs, if any, are cancelled."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.cancel()
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, payload: Any, size: int, timeout: float | None = None, inline: bool = False) -> Any:
        """Queue one job and wait for its result. Raises QueueFull at once when the queue is full,
        TimeoutError after `timeout` seconds (the job is dropped if it had not reached the engine), and
        whatever the handler returned as an Exception for it. `inline`: the job is small enough to run on
        the event loop when it finds the engine idle and nobody else arriving (see the module docstring)."""
        if self._task is None:  # an app mounted in another one gets no startup event: start on first use
            self.start()
        if inline and self._idle() and await self._alone():
            return self._run_inline(payload, max(1, size))
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} requests are waiting")
        job = Job(payload, max(1, size), asyncio.get_running_loop().create_future(), time.perf_counter())
        self._queue.append(job)
        self._queued_tokens += job.size
        self._arrived.set()
        if self._queued_tokens >= self.max_tokens:
            self._full.set()
        try:
            async with asyncio.timeout(timeout):
                return await job.future
        except TimeoutError:  # the future is cancelled: if still queued, _take skips it; if in the engine,
            job.dropped = True  # its result is discarded
            raise

    def _idle(self) -> bool:
        return not self._queue and not self.running

    async def _alone(self) -> bool:
        """Whether, after one turn of the loop (the requests read with this one reach submit meanwhile),
        no other job arrived and the engine is still idle."""
        self._arriving += 1
        try:
            await asyncio.sleep(0)
        finally:
            self._arriving -= 1
        return self._arriving == 0 and self._idle()

    def _run_inline(self, payload: Any, size: int) -> Any:
        """The handler on one job, here on the event loop (the engine thread is idle: `running` keeps it so)."""
        start = time.perf_counter()
        self.running = 1
        try:
            result = self.handler([payload])[0]
        finally:
            self.running = 0
        self.on_batch(BatchStats(1, size, time.perf_counter() - start))
        if isinstance(result, BaseException):
            raise result
        return result

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            if self.max_wait > 0 and len(self._queue) > 1 and self._queued_tokens < self.max_tokens:
                try:
                    await asyncio.wait_for(self._full.wait(), self.max_wait)
                except TimeoutError:
                    pass
            batch = self._take()
            if not batch:
                continue
            self.running = len(batch)
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.handler, [j.payload for j in batch])
            except Exception as e:  # the handler failed as a whole: every job in it gets the error
                results = [e] * len(batch)
            self.running = 0
            for job, result in zip(batch, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            self.on_batch(BatchStats(len(batch), sum(j.size for j in batch), time.perf_counter() - start))

    def _take(self) -> list[Job]:
        """Queued jobs in arrival order up to the token budget (always at least one), dropped ones skipped."""
        batch: list[Job] = []
        tokens = 0
        while self._queue and (not batch or tokens + self._queue[0].size <= self.max_tokens):
            job = self._queue.popleft()
            self._queued_tokens -= job.size
            if job.dropped or job.future.done():
                continue
            batch.append(job)
            tokens += job.size
        if not self._queue:
            self._arrived.clear()
        if self._queued_tokens < self.max_tokens:
            self._full.clear()
        return batch
