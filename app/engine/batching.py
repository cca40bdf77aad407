"""Micro-batching: concurrent requests become one onnxruntime run on one dedicated worker thread.

Requests are collected on the event loop during one loop iteration and handed to the worker thread
as one list; the worker runs them in batches of at most `max_size` and hands each batch's results
back with a single `call_soon_threadsafe`. Inference never runs on the loop, and ORT sessions see
one caller at a time (no oversubscription of the two cores with the shadow teacher).

Why this shape (bench/service.py showed the event loop is the bottleneck): per request the loop only
creates a future and appends to a list; per batch it pays one thread hand-off each way. The earlier
design (a collector task plus `run_in_executor` per batch, and an asyncio timer for the wait) cost
the loop a task wake-up, a concurrent future and a timer per batch, and the loop's timers have
millisecond resolution, so a 0.5 ms wait cost ~1-3 ms of latency for a single client.

Batches form naturally: while one batch runs (~0.3-1 ms for a 100k-item student), newly arriving
requests queue up and form the next one. `max_wait_s` (default 0) optionally holds a batch open on
the worker thread (precise, off the loop) until it is full or the wait has passed since its first
request: only useful if many clients send in bursts faster than one inference. 64 keeps one batch's
scores (64 x n_items float32 = 25 MB at 100k items) in cache range and its latency bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")
_STOP = None


class MicroBatcher(Generic[Req, Res]):
    """`await submit(req)` -> `fn([req, ...])[i]`, with `fn` called on one worker thread."""

    def __init__(self, fn: Callable[[list[Req]], list[Res]], max_size: int = 64, max_wait_s: float = 0.0):
        if max_size < 1 or max_wait_s < 0:
            raise ValueError("max_size must be >= 1 and max_wait_s >= 0")
        self._fn = fn
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []  # this loop iteration's requests
        self._handoff: queue.SimpleQueue[list[tuple[Req, asyncio.Future[Res]]] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.batch_sizes: Callable[[int], None] | None = None  # optional observer (metrics)
        # optional observer (metrics): each batch's wall seconds on the worker and the worker's CPU
        # seconds in it. Their sums tell whether the one inference thread is the ceiling (busy ~100%
        # of the time) and how much of its time it spends off the CPU, waiting for the GIL or a core.
        self.batch_times: Callable[[float, float], None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="recdistill-infer", daemon=True)
        self._thread.start()

    async def submit(self, req: Req) -> Res:
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("batcher is not running")
        future: asyncio.Future[Res] = loop.create_future()
        if not self._pending:  # the first request of this iteration: hand over once the others are in
            loop.call_soon(self._hand_over)
        self._pending.append((req, future))
        return await future

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        self._handoff.put(batch)

    # -- the worker thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        waiting: list[tuple[Req, asyncio.Future[Res]]] = []
        while True:
            if not waiting:
                first = self._handoff.get()
                if first is _STOP:
                    return
                waiting = first
            stop = self._take_queued(waiting)
            if self.max_wait_s > 0 and len(waiting) < self.max_size and not stop:
                stop = self._wait_for_more(waiting)
            batch, waiting = waiting[: self.max_size], waiting[self.max_size :]
            self._run(batch)
            if stop:  # finish what was handed over before the stop, then end
                while waiting:
                    batch, waiting = waiting[: self.max_size], waiting[self.max_size :]
                    self._run(batch)
                return

    def _take_queued(self, waiting: list[tuple[Req, asyncio.Future[Res]]]) -> bool:
        """Move everything already handed over into `waiting`; True when a stop was among it."""
        while True:
            try:
                more = self._handoff.get_nowait()
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            waiting.extend(more)

    def _wait_for_more(self, waiting: list[tuple[Req, asyncio.Future[Res]]]) -> bool:
        deadline = time.monotonic() + self.max_wait_s
        while len(waiting) < self.max_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                more = self._handoff.get(timeout=remaining)
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            waiting.extend(more)
        return False

    def _run(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        live = [(req, fut) for req, fut in batch if not fut.done()]  # drop cancelled callers
        if not live:
            return
        if self.batch_sizes is not None:
            self.batch_sizes(len(live))
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            results: list[Res] | BaseException = self._fn([req for req, _ in live])
        except Exception as exc:  # one bad batch fails its callers, not the worker
            log.exception("inference batch of %d failed", len(live))
            results = exc
        if self.batch_times is not None:
            self.batch_times(time.perf_counter() - wall, time.thread_time() - cpu)
        if isinstance(results, list) and len(results) != len(live):
            results = RuntimeError(f"inference returned {len(results)} results for {len(live)} requests")
        self._deliver(live, results)

    def _deliver(
        self, live: list[tuple[Req, asyncio.Future[Res]]], results: list[Res] | BaseException
    ) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(_resolve, live, results)

    async def close(self) -> None:
        """Stop the worker after the batches already handed over; callers still queued get an error."""
        if self._thread is None:
            return
        self._hand_over()  # whatever this iteration submitted
        self._handoff.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        await asyncio.sleep(0)  # let the worker's last call_soon_threadsafe callbacks run
        while True:
            try:
                rest = self._handoff.get_nowait()
            except queue.Empty:
                break
            if rest is not _STOP:
                _resolve(rest, RuntimeError("service shutting down"))


def _resolve(live: list[tuple[Req, asyncio.Future[Res]]], results: list[Res] | BaseException) -> None:
    """On the loop: settle each caller's future (skipping callers that gave up)."""
    if isinstance(results, BaseException):
        for _, fut in live:
            if not fut.done():
                fut.set_exception(results)
        return
    for (_, fut), res in zip(live, results, strict=True):
        if not fut.done():
            fut.set_result(res)
