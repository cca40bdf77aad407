"""Durable log of served answers and the feedback (clicks, purchases) users give on them.

Every answer of `/v1/recommend` is logged (request id, experiment, arm, unit, items) so feedback can
be validated after a restart and the A/B report can count impressions per arm. Logging must not add
I/O to the request path, so answers go into an in-memory buffer that a writer thread commits in
batches every `flush_interval` seconds; lookups read the buffer first, so feedback that arrives
before the flush still validates. Feedback itself is rare and committed before the 2xx.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

Event = Literal["click", "purchase"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    forced INTEGER NOT NULL,
    unit TEXT NOT NULL,
    model_version TEXT NOT NULL,
    n_items INTEGER NOT NULL,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS served_experiment_ts ON served (experiment, ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (request_id, item_id, event)
);
"""


class FeedbackError(ValueError):
    """Feedback that cannot be accepted; `field` names the request field at fault (for the 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Served:
    """One answer as the caller saw it."""

    request_id: str
    experiment: str
    arm: str
    unit: str
    model_version: str
    items: tuple[str, ...]
    forced: bool = False
    ts: float = 0.0


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    item_id: str
    event: Event
    arm: str
    duplicate: bool  # the same (request, item, event) was already recorded: counted once


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection shared by threads under the caller's lock; WAL so readers never block the writer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class ServedLog:
    """What the SQLite and Redis stores share: the buffered served-answer log and feedback validation.

    `log_served` (on the event loop) only touches an in-memory buffer under `_lock`; a writer thread
    hands the buffer to `_write` every `flush_interval`. `_io_lock` lets one flush write at a time
    (it may be held through the I/O); `_lock` never is. Subclasses set up their connection, then call
    `__init__` (which starts the writer), and implement `_write`, `_stored`, `_record_feedback`.
    """

    _flush_errors: tuple[type[BaseException], ...] = ()  # what the writer thread logs and retries

    def __init__(self, flush_interval: float, clock: Callable[[], float], thread_name: str) -> None:
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

    # -- served answers -------------------------------------------------------------------------
    def log_served(self, served: Served) -> None:
        """O(1) and no I/O: safe to call on the request path; the writer thread stores it."""
        if not served.ts:
            served = Served(**{**served.__dict__, "ts": self._clock()})
        with self._lock:
            self._pending[served.request_id] = served

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

        Regression (issue 3, benchmark): this used to hold `_lock` through the write (an fsync with
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
            with self._lock:  # put the batch back (newer answers for the same id win): nothing lost
                self._pending = {**batch, **self._pending}
                self._writing = {}
            raise
        with self._lock:
            self._writing = {}
        return len(batch)

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._flush_interval)
            try:
                self.flush()
            except self._flush_errors:
                logger.exception("served-answer log (%s): flush failed; will retry", self._describe())

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


class FeedbackStore(ServedLog):
    """Served-answer log + feedback in one SQLite file (the state db beside the history store).

    `_io_lock` also serialises every use of the one connection."""

    _flush_errors = (sqlite3.Error,)

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        flush_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ):
        self._path = Path(path)
        self._conn = connect(path, synchronous)
        self._conn.executescript(_SCHEMA)
        super().__init__(flush_interval, clock, "feedback-writer")

    def _describe(self) -> str:
        return str(self._path)

    def _stored(self, request_id: str) -> Served | None:
        with self._io_lock:
            row = self._conn.execute(
                "SELECT request_id, experiment, arm, unit, model_version, items, forced, ts FROM served "
                "WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row is None:
            return None
        return Served(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), bool(row[6]), row[7])

    def _write(self, batch: list[Served]) -> None:
        rows = [
            (
                s.request_id,
                s.ts,
                s.experiment,
                s.arm,
                int(s.forced),
                s.unit,
                s.model_version,
                len(s.items),
                json.dumps(s.items),
            )
            for s in batch
        ]
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO served VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _record_feedback(self, request_id: str, item_id: str, event: Event) -> bool:
        with self._io_lock:
            self._flush_io_locked()  # the answer must be durable before feedback that points at it
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)",
                (request_id, item_id, event, self._clock()),
            )
        return cur.rowcount == 0

    # -- reporting --------------------------------------------------------------------------------
    def arm_counts(self, experiment: str, since: float | None = None) -> dict[str, dict[str, int]]:
        """Per arm: units, requests, impressions, clicks, purchases, requests with a purchase.

        Forced requests (the testing header) are left out: they are not part of the randomised split.
        Clicks and purchases count distinct (request, item) pairs, so a double click counts once.
        """
        self.flush()
        where = "s.experiment = ? AND s.forced = 0" + (" AND s.ts >= ?" if since is not None else "")
        params: Sequence[Any] = (experiment, since) if since is not None else (experiment,)
        with self._io_lock:
            base = self._conn.execute(
                f"SELECT arm, COUNT(DISTINCT CASE WHEN unit != 'anonymous' THEN unit END), COUNT(*), "
                f"SUM(n_items) FROM served s WHERE {where} GROUP BY arm",
                params,
            ).fetchall()
            events = self._conn.execute(
                f"SELECT s.arm, f.event, COUNT(*), COUNT(DISTINCT f.request_id) FROM feedback f "
                f"JOIN served s ON s.request_id = f.request_id WHERE {where} GROUP BY s.arm, f.event",
                params,
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for arm, units, requests, impressions in base:
            out[arm] = {
                "users": units,
                "requests": requests,
                "impressions": impressions or 0,
                "clicks": 0,
                "purchases": 0,
                "purchase_requests": 0,
            }
        for arm, event, n, n_requests in events:
            counts = out.setdefault(arm, {})
            counts["clicks" if event == "click" else "purchases"] = n
            if event == "purchase":
                counts["purchase_requests"] = n_requests
        return out

    def close(self) -> None:
        """Stop the writer and commit what is buffered: a clean restart loses nothing."""
        self._stop_writer()
        with self._io_lock:
            self._flush_io_locked()
            self._conn.close()
