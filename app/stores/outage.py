"""When the shared store fails: what this replica knows of it, and the error a write answers with.

The service keeps serving while its store (Redis, or the SQLite files) is down: a read that cannot
be made degrades (a `user_id` request is answered from the popular order and says so), a write that
cannot be made durable is refused with 503 and `Retry-After` (app.api.errors). `StoreHealth` is the
one record of how the store behaves, per operation (reads, writes): whether the last attempt failed,
since when and why. Readiness shows it, the metrics count it, and the request path asks it whether
to try at all: after a failure, history reads and writes fail fast for `retry_seconds` instead of
each waiting out a timeout against a store that just failed. The catalogue poller reads the store
every poll whatever this says, so reads are seen to recover within a poll of the store's return.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

log = logging.getLogger(__name__)

Operation = Literal["read", "write"]
OPERATIONS: tuple[Operation, ...] = ("read", "write")


class StoreUnavailable(RuntimeError):
    """The shared store cannot be read or written now; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def storage_errors() -> tuple[type[Exception], ...]:
    """What the stores raise when the storage failed rather than the request: SQLite's operational
    errors (locked past the busy timeout, disk full, I/O) and every Redis client error."""
    errors: list[type[Exception]] = [StoreUnavailable, sqlite3.OperationalError]
    try:
        from redis import RedisError
    except ImportError:  # the redis extra is not installed: SQLite only
        return tuple(errors)
    from app.stores.redis_client import RedisUnavailable

    return (*errors, RedisError, RedisUnavailable)


class _OpState:
    __slots__ = ("failing_since", "last_attempt", "error", "failures")

    def __init__(self) -> None:
        self.failing_since: float | None = None  # wall clock of the first failure of this outage
        self.last_attempt = 0.0  # monotonic clock of the last attempt while failing
        self.error: str | None = None
        self.failures = 0  # in this outage


class StoreHealth:
    """Per operation, whether the shared store's last attempt failed (see the module docstring).

    Cheap on the request path: `succeeded` is one attribute test while nothing fails. Updated from
    the event loop and from worker threads; a lock orders only the transitions (which log once)."""

    def __init__(
        self,
        where: str,
        retry_seconds: float = 1.0,
        on_change: Callable[[Operation, bool], None] | None = None,
        on_failure: Callable[[Operation], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.where = where  # the backend and its place, for messages (no password)
        self.retry_seconds = retry_seconds
        self.retry_after = max(1, math.ceil(retry_seconds))  # whole seconds, for the header
        self._ops = {op: _OpState() for op in OPERATIONS}
        self._on_change = on_change  # (operation, up) on each transition: the metrics' gauge
        self._on_failure = on_failure  # every failure: the metrics' counter
        self._clock = clock
        self._lock = threading.Lock()

    def fail_fast(self, op: Operation) -> bool:
        """True while `op` is failing: do not try the store now. Once every `retry_seconds` one
        caller gets False instead (it claims the attempt), so a store that hangs rather than refuses
        holds one request per window to its timeout, not every request that arrives meanwhile."""
        state = self._ops[op]
        if state.failing_since is None:
            return False
        with self._lock:
            now = self._clock()
            if now - state.last_attempt < self.retry_seconds:
                return True
            state.last_attempt = now  # this caller tries; the others keep failing fast
            return False

    def succeeded(self, op: Operation) -> None:
        state = self._ops[op]
        if state.failing_since is None:
            return
        with self._lock:
            if state.failing_since is None:
                return
            took = time.time() - state.failing_since
            log.warning(
                "shared store %s: %ss work again after %.1f s (%d failed)",
                self.where,
                op,
                took,
                state.failures,
            )
            state.failing_since, state.error, state.failures = None, None, 0
        if self._on_change is not None:
            self._on_change(op, True)

    def failed(self, op: Operation, exc: BaseException) -> StoreUnavailable:
        """Record a failure of `op`; returns the StoreUnavailable to raise (or to answer 503 with)."""
        state = self._ops[op]
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        with self._lock:
            first = state.failing_since is None
            if first:
                state.failing_since = time.time()
            state.last_attempt, state.error = self._clock(), error
            state.failures += 1
        if first:  # one line per outage, no traceback: the store is down, the code is fine
            log.error(
                "shared store %s: %ss failing (%s); reads degrade, writes answer 503", self.where, op, error
            )
            if self._on_change is not None:
                self._on_change(op, False)
        if self._on_failure is not None:
            self._on_failure(op)
        return self.unavailable(op)

    def unavailable(self, op: Operation) -> StoreUnavailable:
        """The error for a call refused while `op` is failing."""
        error = self._ops[op].error or "not answering"
        return StoreUnavailable(
            f"the shared store ({self.where}) cannot be {'read' if op == 'read' else 'written'} now "
            f"({error}); retry after {self.retry_after} s",
            self.retry_after,
        )

    @property
    def degraded(self) -> bool:
        return any(state.failing_since is not None for state in self._ops.values())

    def summary(self) -> dict[str, Any]:
        """What readiness shows: per operation, ok or failing since when and why."""
        out: dict[str, Any] = {"backend": self.where}
        for op, state in self._ops.items():
            since = state.failing_since
            out[f"{op}s"] = {
                "ok": since is None,
                "failing_since": None if since is None else datetime.fromtimestamp(since, UTC).isoformat(),
                "error": state.error,
                "failures": state.failures,
            }
        return out

    def describe(self) -> str | None:
        """One line for readiness' `detail` while degraded; None while everything works."""
        parts = [
            f"{op}s failing since {self.summary()[f'{op}s']['failing_since']} ({state.error})"
            for op, state in self._ops.items()
            if state.failing_since is not None
        ]
        if not parts:
            return None
        return f"shared store {self.where}: " + "; ".join(parts) + " (reads degrade, writes answer 503)"
