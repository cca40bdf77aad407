"""The users' interaction histories in SQLite (WAL): the default `HistoryStore`.

Histories are stored by raw ids, not indices, so they survive a model version whose id maps differ.
The Redis twin is app/stores/history_redis.py; both implement `app.stores.protocols.HistoryStore`.

Durability: the database runs in WAL mode with `synchronous=FULL` by default, so each commit fsyncs
the WAL before `append` returns, and the service answers 2xx only after that: an acknowledged event
survives `kill -9` and a power loss. `NORMAL` (a setting) skips the per-commit fsync; with WAL a
committed transaction is then still in the OS page cache and survives `kill -9` of the process, but
the newest commits may be lost if the machine loses power.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.stores.records import Interaction
from core.sqlite import connect, transaction

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT,
    source TEXT NOT NULL CHECK (source IN ('seed', 'event'))
);
CREATE INDEX IF NOT EXISTS ix_interactions_user ON interactions (user_id, ts, id, item_id);
CREATE TABLE IF NOT EXISTS seeded_versions (version TEXT PRIMARY KEY, rows INTEGER NOT NULL, at INTEGER NOT NULL);
"""

# Seeding, inside one transaction (SqliteHistoryStore.seed_sync). The version's rows go to a temp
# table in the order given (rowid); `seed_skip` holds, for each (user, item, timestamp) that a logged
# event has, the first n equal seed rows, n = how many such events were logged; the rest are inserted.
_SEED_TEMP = (  # statements one by one: executescript would commit the open transaction first
    "CREATE TEMP TABLE IF NOT EXISTS seed_in (user_id TEXT, item_id TEXT, ts INTEGER, event TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS seed_skip (rid INTEGER PRIMARY KEY)",
    "DELETE FROM seed_in",
    "DELETE FROM seed_skip",
)
_SEED_INSERT_SKIPS = """
INSERT INTO seed_skip
WITH logged AS (
    SELECT s.rowid AS rid, s.user_id, s.item_id, s.ts FROM seed_in s WHERE EXISTS (
        SELECT 1 FROM interactions e WHERE e.user_id = s.user_id AND e.ts = s.ts
        AND e.item_id = s.item_id AND e.source = 'event')
), numbered AS (
    SELECT rid, user_id, item_id, ts,
           ROW_NUMBER() OVER (PARTITION BY user_id, item_id, ts ORDER BY rid) AS n FROM logged
)
SELECT rid FROM numbered WHERE n <= (
    SELECT COUNT(*) FROM interactions e WHERE e.user_id = numbered.user_id AND e.ts = numbered.ts
    AND e.item_id = numbered.item_id AND e.source = 'event')
"""
_SEED_INSERT = """
INSERT INTO interactions (user_id, item_id, ts, event, source)
SELECT user_id, item_id, ts, event, 'seed' FROM seed_in
WHERE rowid NOT IN (SELECT rid FROM seed_skip) ORDER BY rowid
"""


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the caller went away (cancelled); its events are committed all the same
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class SqliteHistoryStore:
    """SQLite in WAL mode. Writes go through one dedicated thread (one writer, as SQLite wants) with
    group commit, so concurrent event posts share one fsync; reads use their own connection (WAL
    readers never wait for the writer) and are one indexed, covering query, cheap enough (tens of
    microseconds) to run on the event loop."""

    def __init__(self, path: Path, synchronous: str = "FULL"):
        self.path = Path(path)
        self._writer = connect(self.path, synchronous)
        self._writer.executescript(SCHEMA)
        self._reader = connect(self.path, synchronous)
        self._read_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recdistill-history")
        self._pending: list[tuple[list[Interaction], asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._pending_lock = threading.Lock()
        self._draining = False

    # -- sync implementation (runs on the writer thread or, for reads, anywhere) --
    def read_sync(self, user_id: str, limit: int) -> list[Interaction]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT item_id, ts, event FROM interactions WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        return [Interaction(user_id, item, ts, event) for item, ts, event in reversed(rows)]

    def append_sync(self, events: Sequence[Interaction]) -> None:
        with transaction(self._writer, immediate=True) as conn:  # FULL: fsynced before it returns
            conn.executemany(
                "INSERT INTO interactions (user_id, item_id, ts, event, source) VALUES (?, ?, ?, ?, 'event')",
                [(e.user_id, e.item_id, e.timestamp, e.event) for e in events],
            )

    def seed_sync(
        self,
        version: str,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[int],
        events: Sequence[str | None] | None = None,
    ) -> int:
        """Swap the seed rows for this version's, once per version, in one transaction.

        The previous version's seed rows are removed (a retrained version's log supersedes them);
        logged events are never touched. A seed row equal to a logged event (same user, item and
        timestamp: the event came back through `recdistill events export` and a retrain) is skipped
        so it is not counted twice, and exactly as often as it was logged: two equal seed rows
        against one logged event keep one. Rows keep the order given (ties in time: that order).
        """
        conn = self._writer
        if conn.execute("SELECT 1 FROM seeded_versions WHERE version = ?", (version,)).fetchone():
            return 0
        kinds = (e or None for e in events) if events is not None else itertools.repeat(None, len(user_ids))
        rows = zip(user_ids, item_ids, (int(t) for t in timestamps), kinds, strict=True)
        with transaction(conn, immediate=True):
            conn.execute("DELETE FROM interactions WHERE source = 'seed'")
            for statement in _SEED_TEMP:
                conn.execute(statement)
            conn.executemany("INSERT INTO seed_in (user_id, item_id, ts, event) VALUES (?, ?, ?, ?)", rows)
            conn.execute(_SEED_INSERT_SKIPS)
            added = conn.execute(_SEED_INSERT).rowcount
            for statement in _SEED_TEMP[2:]:  # empty the temp tables again
                conn.execute(statement)
            conn.execute("INSERT INTO seeded_versions VALUES (?, ?, ?)", (version, added, int(time.time())))
        return added

    # -- the async interface --
    async def history(self, user_id: str, limit: int) -> list[Interaction]:
        return self.read_sync(user_id, limit)

    async def append(self, events: Sequence[Interaction]) -> None:
        """Group commit: appends that arrive while a commit runs share the next transaction and fsync."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._pending_lock:
            self._pending.append((list(events), future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        await future

    def _drain(self) -> None:
        """Writer thread: commit everything pending in one transaction, resolve its callers, repeat."""
        while True:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            error: BaseException | None = None
            try:
                self.append_sync([event for events, _, _ in batch for event in events])
            except Exception as exc:  # bodies are validated already: this is the disk or the database
                error = exc
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_settle, future, error)

    async def seed(
        self,
        version: str,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[int],
        events: Sequence[str | None] | None = None,
    ) -> int:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.seed_sync, version, user_ids, item_ids, timestamps, events
        )

    def seed_from_arrays(
        self,
        version: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray,
        events: np.ndarray | None = None,
    ) -> int:
        """Seed from the model's npz arrays (raw ids already looked up), on the writer thread; blocks.
        A database error is logged and 0 returned (the version is served without the seed)."""
        future = self._executor.submit(
            self.seed_sync, version, user_ids.tolist(), item_ids.tolist(), timestamps.tolist(),
            None if events is None else events.tolist(),
        )  # fmt: skip
        try:
            return future.result()
        except sqlite3.Error:
            log.exception("seeding the history store from %s failed; serving without the seed", version)
            return 0

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._reader.close()
        self._writer.close()
