"""tagger/serving/batcher.py: where a job runs. A lone small job that finds the engine idle runs on the event
loop (no thread hops: one client's latency, issue 33 section 7); jobs that arrive together, or find the
engine busy, are batched in the engine thread as before."""
from __future__ import annotations

import asyncio
import threading

from tagger.serving.batcher import Batcher


class Engine:
    """A handler that records each batch and the thread it ran in; `hold` keeps it busy until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, int]] = []
        self.hold: threading.Event | None = None
        self.busy = threading.Event()

    def __call__(self, payloads: list) -> list:
        self.busy.set()
        if self.hold is not None:
            self.hold.wait(30)
        self.batches.append((list(payloads), threading.get_ident()))
        return [p.upper() for p in payloads]


async def with_batcher(engine: Engine, work) -> object:
    batcher = Batcher(engine, max_tokens=100)
    batcher.start()
    try:
        return await asyncio.wait_for(work(batcher), 30)
    finally:
        await batcher.stop()


def test_a_lone_small_job_runs_on_the_event_loop():
    engine = Engine()
    answer = asyncio.run(with_batcher(engine, lambda b: b.submit("a", 1, timeout=10, inline=True)))
    assert answer == "A"
    assert engine.batches == [(["a"], threading.get_ident())]  # asyncio.run's loop runs in this thread


def test_small_jobs_arriving_together_are_one_batch_in_the_engine_thread():
    engine = Engine()

    async def together(batcher: Batcher) -> list:
        return await asyncio.gather(*(batcher.submit(p, 1, timeout=10, inline=True) for p in "abcde"))

    assert asyncio.run(with_batcher(engine, together)) == list("ABCDE")
    assert [payloads for payloads, _ in engine.batches] == [list("abcde")]
    assert engine.batches[0][1] != threading.get_ident()


def test_a_small_job_waits_for_a_busy_engine_instead_of_running_beside_it():
    """The engine is not run from two threads at once: a small job arriving while a batch is in the engine
    is queued, and tagged in the engine thread after it."""
    engine = Engine()
    engine.hold = threading.Event()

    async def while_busy(batcher: Batcher) -> list:
        first = asyncio.ensure_future(batcher.submit("a", 1, timeout=10))
        while not engine.busy.is_set():
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit("b", 1, timeout=10, inline=True))
        await asyncio.sleep(0.05)
        engine.hold.set()
        return [await first, await second]

    assert asyncio.run(with_batcher(engine, while_busy)) == ["A", "B"]
    assert [payloads for payloads, _ in engine.batches] == [["a"], ["b"]]
    assert all(thread != threading.get_ident() for _, thread in engine.batches)


def test_a_job_not_vouched_small_never_runs_on_the_event_loop():
    engine = Engine()
    assert asyncio.run(with_batcher(engine, lambda b: b.submit("a", 1, timeout=10))) == "A"
    assert engine.batches[0][1] != threading.get_ident()
