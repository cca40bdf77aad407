"""The micro-batcher: batches bounded by size, results routed to the right caller, failures isolated."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.engine.batching import MicroBatcher


def test_concurrent_requests_share_batches_up_to_max_size() -> None:
    calls: list[list[int]] = []
    threads: set[str] = set()

    def square(batch: list[int]) -> list[int]:
        calls.append(list(batch))
        threads.add(threading.current_thread().name)
        return [x * x for x in batch]

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(square, max_size=4, max_wait_s=0.0)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [i * i for i in range(10)]
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # all 10 queued before the collector ran
    assert len(threads) == 1 and threading.main_thread().name not in threads  # off the event loop


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    def fn(batch: list[int]) -> list[int]:
        if -1 in batch:
            raise ValueError("bad input")
        return batch

    async def main() -> int:
        batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_size=8, max_wait_s=0.0)
        batcher.start()
        try:
            with pytest.raises(ValueError, match="bad input"):
                await batcher.submit(-1)
            return await batcher.submit(7)
        finally:
            await batcher.close()

    assert asyncio.run(main()) == 7


def test_the_wait_collects_requests_that_arrive_shortly_after() -> None:
    calls: list[int] = []

    def fn(batch: list[int]) -> list[int]:
        calls.append(len(batch))
        return batch

    async def main() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_size=64, max_wait_s=5.0)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)  # the collector takes request 1 and starts waiting
            second = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.01)
            rest = [
                asyncio.ensure_future(batcher.submit(i)) for i in range(3, 65)
            ]  # fills the batch: no 5 s wait
            assert await asyncio.gather(first, second, *rest) == list(range(1, 65))
        finally:
            await batcher.close()

    asyncio.run(main())
    assert calls == [64]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda b: b, max_size=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda b: b, max_wait_s=-1)


def test_submit_before_start_is_an_error() -> None:
    async def main() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda b: b)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(1)

    asyncio.run(main())


def test_a_caller_that_gave_up_is_not_run_and_the_others_are() -> None:
    seen: list[list[int]] = []
    started, release = threading.Event(), threading.Event()

    def fn(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        started.set()
        release.wait(5.0)
        return batch

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_size=8)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(0))  # occupies the worker until released
            assert await asyncio.to_thread(started.wait, 5.0)
            gone = asyncio.ensure_future(batcher.submit(1))
            kept = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0)  # both are handed over while the worker is still busy
            gone.cancel()
            release.set()
            return [await first, await kept]
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [0, 2]
    assert seen == [[0], [2]]  # the cancelled request never reached the model


def test_a_wrong_number_of_results_fails_the_callers_instead_of_hanging() -> None:
    async def main() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda batch: batch[:-1], max_size=8)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="1 results for 2 requests"):
                await asyncio.gather(batcher.submit(1), batcher.submit(2))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_close_answers_what_was_already_submitted() -> None:
    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda batch: [x + 1 for x in batch], max_size=2)
        batcher.start()
        calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0)  # submitted, not yet answered
        await batcher.close()
        results = await asyncio.gather(*calls)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(9)
        return results

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]


def test_each_batch_reports_its_wall_time_and_the_worker_cpu_time_in_it() -> None:
    """A batch that sleeps is busy on the wall clock but not on a CPU; one that spins is on a CPU."""
    times: list[tuple[float, float]] = []

    def fn(batch: list[str]) -> list[str]:
        if batch == ["sleep"]:
            time.sleep(0.05)
        else:
            start = time.thread_time()
            while time.thread_time() - start < 0.05:
                pass
        return batch

    async def main() -> None:
        batcher: MicroBatcher[str, str] = MicroBatcher(fn, max_size=1)
        batcher.batch_times = lambda wall, cpu: times.append((wall, cpu))
        batcher.start()
        try:
            await batcher.submit("sleep")
            await batcher.submit("spin")
        finally:
            await batcher.close()

    asyncio.run(main())
    (sleep_wall, sleep_cpu), (spin_wall, spin_cpu) = times
    assert sleep_wall >= 0.05 and sleep_cpu < 0.025  # off the CPU for the whole sleep
    # the worker's own CPU clock covers the spin; the wall clock is another clock, so only about as long
    assert spin_cpu >= 0.05 and spin_wall >= 0.049
