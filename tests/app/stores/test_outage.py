"""StoreHealth and the guarded history store (app/stores/outage.py, history_guard.py): failures become
StoreUnavailable, are recorded per operation, fail fast for the retry window, and clear on success."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import numpy as np
import pytest

from app.stores.history_guard import GuardedHistoryStore
from app.stores.outage import StoreHealth, StoreUnavailable
from app.stores.records import Interaction


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyHistory:
    """A HistoryStore whose calls fail while `broken`, hang while `slow`; counts its calls."""

    def __init__(self) -> None:
        self.broken = False
        self.slow = False
        self.calls = 0

    async def history(self, user_id: str, limit: int) -> list[Interaction]:
        self.calls += 1
        if self.slow:
            await asyncio.sleep(10)
        if self.broken:
            raise sqlite3.OperationalError("database or disk is full")
        return [Interaction(user_id, "i01", 1)]

    async def append(self, events: Sequence[Interaction]) -> None:
        self.calls += 1
        if self.broken:
            raise sqlite3.OperationalError("database is locked")

    async def seed(
        self, version: str, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[int]
    ) -> int:
        return 0

    def seed_from_arrays(
        self, version: str, user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray
    ) -> int:
        return 0

    async def close(self) -> None:
        return None


def test_health_records_each_operation_and_calls_back_on_transitions_only() -> None:
    changes: list[tuple[str, bool]] = []
    failures: list[str] = []
    clock = Clock()
    health = StoreHealth(
        "redis redis://r:6379/0", 2.5, lambda op, up: changes.append((op, up)), failures.append, clock
    )
    assert health.retry_after == 3 and not health.degraded and health.describe() is None
    error = health.failed("write", ConnectionError("refused"))
    assert isinstance(error, StoreUnavailable) and error.retry_after == 3
    assert "cannot be written now (ConnectionError: refused); retry after 3 s" in str(error)
    health.failed("write", ConnectionError("refused again"))
    assert changes == [("write", False)] and failures == ["write", "write"]
    summary = health.summary()
    assert summary["reads"] == {"ok": True, "failing_since": None, "error": None, "failures": 0}
    assert summary["writes"]["ok"] is False and summary["writes"]["failures"] == 2
    assert summary["writes"]["error"] == "ConnectionError: refused again"
    assert health.degraded and "writes failing since" in (health.describe() or "")
    assert health.fail_fast("write") and not health.fail_fast("read")
    clock.now += 2.5
    assert not health.fail_fast("write")  # the window is over: this caller tries the store again
    assert health.fail_fast("write")  # and the others keep failing fast while it does
    clock.now += 2.5
    assert not health.fail_fast("write")  # that try never reported back: another one, a window later
    health.succeeded("write")
    health.succeeded("write")
    assert changes == [("write", False), ("write", True)] and not health.degraded


def test_the_guard_turns_storage_errors_into_store_unavailable_and_fails_fast() -> None:
    clock = Clock()
    inner = FlakyHistory()
    store = GuardedHistoryStore(inner, StoreHealth("sqlite x", 1.0, clock=clock))

    async def scenario() -> None:
        assert [r.item_id for r in await store.history("u", 5)] == ["i01"]
        inner.broken = True
        with pytest.raises(StoreUnavailable, match="cannot be read now"):
            await store.history("u", 5)
        with pytest.raises(StoreUnavailable, match="cannot be written now"):
            await store.append([Interaction("u", "i02", 2)])
        assert inner.calls == 3
        with pytest.raises(StoreUnavailable):  # within the window: the store is not even asked
            await store.history("u", 5)
        assert inner.calls == 3
        inner.broken = False
        clock.now += 1.0
        assert len(await store.history("u", 5)) == 1  # retried after the window, and it works
        await store.append([Interaction("u", "i02", 2)])
        assert not store.health.degraded

    asyncio.run(scenario())


def test_a_read_past_its_timeout_is_unavailable_not_a_hang() -> None:
    inner = FlakyHistory()
    inner.slow = True
    store = GuardedHistoryStore(inner, StoreHealth("redis r", 1.0), read_timeout_s=0.05)

    async def scenario() -> None:
        with pytest.raises(StoreUnavailable, match="TimeoutError"):
            await store.history("u", 5)

    asyncio.run(scenario())
    assert store.health.summary()["reads"]["ok"] is False
