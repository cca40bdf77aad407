"""What the SQLite and Redis feedback stores share: the buffered served-answer log, the checks on
feedback and the per-unit sums. Subclasses add the storage (`_write`, `_stored`, `_record_feedback`,
`_counts`, `answer_rows`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.stores.records import (
    AnswerRows,
    Event,
    FeedbackError,
    FeedbackResult,
    Served,
    UnitSums,
    unit_sums_of,
)

logger = logging.getLogger(__name__)


class ServedLog:
    """What the SQLite and Redis stores share: the buffered served-answer log and feedback validation.

    `log_served` (on the event loop) only touches an in-memory buffer under `_lock`; a writer thread
    hands the buffer to `_write` every `flush_interval`. `_io_lock` lets one flush write at a time
    (it may be held through the I/O); `_lock` never is. Subclasses set up their connection, then call
    `__init__` (which starts the writer), and implement `_write`, `_stored`, `_record_feedback`.
    """

    _flush_errors: tuple[type[BaseException], ...] = ()  # what the writer thread logs and retries
    # While the store cannot be written (an outage), answers wait in memory; past this many the oldest
    # waiting answer is dropped and counted (`dropped`, the gauge recdistill_served_answers_dropped), so a
    # long outage under traffic costs A/B data it says it lost, never the replica's memory. An answer of
    # 10 items holds about 1 KB (measured: 212 MB for 200,000), so the bound is about 100 MB, some
    # 5 minutes of answers at 300 per second.
    max_buffered = 100_000

    def __init__(self, flush_interval: float, clock: Callable[[], float], thread_name: str) -> None:
        self.dropped = 0  # answers dropped from a full buffer (see max_buffered)
        self._lock = threading.Lock()  # guards the buffers only; never held across I/O
        self._io_lock = threading.Lock()  # one flush at a time; held through the I/O
        self._pending: dict[str, Served] = {}
        self._writing: dict[str, Served] = {}  # the batch being written, still visible to lookup
        self._clock = clock
        self._flush_interval = flush_interval
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # -- hooks ------------------------------------------------------------------------------------
    def _write(self, batch: list[Served]) -> None:
        """Store `batch` durably, all or nothing (raise to have it retried)."""
        raise NotImplementedError

    def _stored(self, request_id: str) -> Served | None:
        """The answer as stored (not the buffers), or None."""
        raise NotImplementedError

    def _record_feedback(self, request_id: str, item_id: str, event: Event) -> bool:
        """Store the feedback once its answer is stored; True if it was already recorded."""
        raise NotImplementedError

    def _describe(self) -> str:
        """Where the log lives, for the writer's error messages."""
        raise NotImplementedError

    def _counts(
        self, experiment: str, since: float | None, until: float | None, bucket: int | None
    ) -> dict[int, dict[str, dict[str, int]]]:
        """{bucket start: {arm: counts}} of the answers stored in [since, until) (forced ones left
        out); one bucket, 0, when `bucket` is None. The counts are FeedbackStore.arm_counts'."""
        raise NotImplementedError

    def answer_rows(
        self, experiment: str | None, since: float | None = None, until: float | None = None
    ) -> AnswerRows:
        """FeedbackStore.answer_rows: one row per answer of the window, forced ones left out."""
        raise NotImplementedError

    # -- served answers -------------------------------------------------------------------------
    def log_served(self, served: Served) -> None:
        """O(1) and no I/O: safe to call on the request path; the writer thread stores it."""
        if not served.ts:
            served = Served(**{**served.__dict__, "ts": self._clock()})
        with self._lock:
            self._pending[served.request_id] = served
            if len(self._pending) > self.max_buffered:  # the store has been failing for a while
                del self._pending[next(iter(self._pending))]  # the oldest waiting answer
                self.dropped += 1

    def _buffered(self, request_id: str) -> Served | None:
        """The buffer, then the batch being written."""
        with self._lock:
            return self._pending.get(request_id) or self._writing.get(request_id)

    def lookup(self, request_id: str) -> Served | None:
        """The buffer, then the batch being written, then the store."""
        served = self._buffered(request_id)
        if served is not None:
            return served
        # The answer may have moved from the buffer to the store between the two reads.
        return self._stored(request_id) or self._buffered(request_id)

    def flush(self) -> int:
        """Write every buffered answer now; returns how many were written.

        Regression (found by bench/service.py under load): this used to hold `_lock` through the write (an fsync with
        SQLite's synchronous=FULL, a network round trip with Redis) while `log_served`, called on the
        event loop, waited for the same lock, so the loop stalled on I/O every flush interval. Now the
        buffer is swapped out under `_lock` and written under `_io_lock` only; `lookup` still sees the
        batch in flight, and a failed write puts it back.
        """
        with self._io_lock:
            return self._flush_io_locked()

    def _flush_io_locked(self) -> int:
        with self._lock:
            if not self._pending:
                return 0
            batch, self._pending = self._pending, {}
            self._writing = batch
        try:
            self._write(list(batch.values()))
        except BaseException:
            with self._lock:  # put the batch back (newer answers for the same id win), within the bound
                self._pending = {**batch, **self._pending}
                self._writing = {}
                excess = len(self._pending) - self.max_buffered
                if excess > 0:
                    for request_id in list(self._pending)[:excess]:  # the oldest
                        del self._pending[request_id]
                    self.dropped += excess
            raise
        with self._lock:
            self._writing = {}
        return len(batch)

    def _run(self) -> None:
        """Flush every interval. A failing store is logged once per outage (one line, no traceback:
        the storage failed, not the code), and its answers stay buffered until a flush succeeds (up to
        `max_buffered`; the outage's drops are logged when it ends)."""
        failing = False
        while not self._closed.is_set():
            self._wake.wait(self._flush_interval)
            try:
                written = self.flush()
            except self._flush_errors as exc:
                if not failing:
                    logger.error(
                        "served-answer log (%s): flush failed (%s: %s); answers stay buffered, retrying",
                        self._describe(), type(exc).__name__, exc,
                    )  # fmt: skip
                failing = True
                continue
            if failing:
                logger.warning(
                    "served-answer log (%s): flushing again (%d answers stored; %d dropped from a full "
                    "buffer since start)", self._describe(), written, self.dropped,
                )  # fmt: skip
                failing = False

    def _stop_writer(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=5.0)

    # -- feedback ---------------------------------------------------------------------------------
    def _served_for_feedback(self, request_id: str) -> Served | None:
        return self.lookup(request_id)

    def add_feedback(self, request_id: str, item_id: str, event: Event) -> FeedbackResult:
        """Validate against the served answer, then store (durably) before returning."""
        if event not in ("click", "purchase"):
            raise FeedbackError("event", f"unknown event {event!r}, expected 'click' or 'purchase'")
        served = self._served_for_feedback(request_id)
        if served is None:
            raise FeedbackError(
                "request_id", f"unknown request id {request_id!r}: no answer was served under it"
            )
        if item_id not in served.items:
            raise FeedbackError(
                "item_id", f"item {item_id!r} was not in the answer to request {request_id!r}"
            )
        duplicate = self._record_feedback(request_id, item_id, event)
        return FeedbackResult(request_id, item_id, event, served.arm, duplicate=duplicate)

    # -- reporting --------------------------------------------------------------------------------
    def arm_counts(
        self, experiment: str, since: float | None = None, until: float | None = None
    ) -> dict[str, dict[str, int]]:
        """Per arm: units, requests, impressions, clicks, purchases, requests with a purchase.

        Forced requests (the testing header) are left out: they are not part of the randomised split.
        Clicks and purchases count distinct (request, item) pairs, so a double click counts once.
        """
        return self._counts(experiment, since, until, None).get(0, {})

    def bucket_counts(
        self, experiment: str, bucket_seconds: int, since: float | None = None, until: float | None = None
    ) -> dict[int, dict[str, dict[str, int]]]:
        """`arm_counts` per time bucket of the answers (FeedbackStore.bucket_counts)."""
        return self._counts(experiment, since, until, bucket_seconds)

    def unit_sums(
        self, experiment: str, since: float | None = None, until: float | None = None
    ) -> dict[str, UnitSums]:
        """Per arm, per randomised unit: the sums of `arm_counts` (FeedbackStore.unit_sums)."""
        return unit_sums_of(self.answer_rows(experiment, since, until))
