"""The history store as the request path uses it: bounded in time, and honest when the store fails.

`GuardedHistoryStore` wraps either backend's `HistoryStore` (same Protocol): a read or a write that
the storage fails, or that outlasts its timeout, raises `StoreUnavailable` and is recorded in the
app's `StoreHealth`; while an operation is failing, calls fail fast for `retry_seconds` (see
app/stores/outage.py). What a caller does with that is the caller's: `resolve` answers a `user_id`
request from the popular order, `POST /v1/events` answers 503 with `Retry-After`.

A write that timed out may still be applied by the store afterwards (Redis got it, or SQLite's group
commit ran late): the client was told 503, retries, and the event is then stored twice, never lost.
Seeding is passed through unchanged (it has its own error handling, on the loader's thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from app.stores.outage import StoreHealth, storage_errors
from app.stores.protocols import HistoryStore
from app.stores.records import Interaction


class GuardedHistoryStore:
    """`HistoryStore` whose storage failures become `StoreUnavailable` (module docstring)."""

    def __init__(
        self,
        inner: HistoryStore,
        health: StoreHealth,
        read_timeout_s: float | None = None,
        write_timeout_s: float | None = None,
    ):
        """Timeouts None: none (SQLite reads run on the loop without an await, so none could fire)."""
        self.inner = inner
        self.health = health
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self._errors: tuple[type[Exception], ...] = (*storage_errors(), TimeoutError)

    async def history(self, user_id: str, limit: int) -> list[Interaction]:
        health = self.health
        if health.fail_fast("read"):
            raise health.unavailable("read")
        try:
            async with asyncio.timeout(self.read_timeout_s):
                rows = await self.inner.history(user_id, limit)
        except self._errors as exc:
            raise health.failed("read", exc) from exc
        health.succeeded("read")
        return rows

    async def append(self, events: Sequence[Interaction]) -> None:
        health = self.health
        if health.fail_fast("write"):
            raise health.unavailable("write")
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.inner.append(events)
        except self._errors as exc:
            raise health.failed("write", exc) from exc
        health.succeeded("write")

    async def seed(
        self,
        version: str,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[int],
        events: Sequence[str | None] | None = None,
    ) -> int:
        return await self.inner.seed(version, user_ids, item_ids, timestamps, events)

    def seed_from_arrays(
        self,
        version: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray,
        events: np.ndarray | None = None,
    ) -> int:
        return self.inner.seed_from_arrays(version, user_ids, item_ids, timestamps, events)

    async def close(self) -> None:
        await self.inner.close()
