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
        self, version: str, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[int]
    ) -> int:
        """Swap the seed rows for this version's, once per version.

        The previous version's seed rows are removed (a retrained version's training data supersedes
        them). A seed row equal to a logged event (same user, item and timestamp: the event came back
        through `export_events` and retraining) is skipped so it is not counted twice.
        """
        conn = self._writer
        if conn.execute("SELECT 1 FROM seeded_versions WHERE version = ?", (version,)).fetchone():
            return 0
        with transaction(conn, immediate=True):
            conn.execute("DELETE FROM interactions WHERE source = 'seed'")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS seed_in (user_id TEXT, item_id TEXT, ts INTEGER)")
            conn.execute("DELETE FROM seed_in")
            conn.executemany(
                "INSERT INTO seed_in VALUES (?, ?, ?)",
                zip(user_ids, item_ids, (int(t) for t in timestamps), strict=True),
            )
            added = conn.execute(
                "INSERT INTO interactions (user_id, item_id, ts, event, source) "
                "SELECT s.user_id, s.item_id, s.ts, NULL, 'seed' FROM seed_in s WHERE NOT EXISTS ("
                " SELECT 1 FROM interactions e WHERE e.user_id = s.user_id AND e.ts = s.ts"
                " AND e.item_id = s.item_id AND e.source = 'event')"
            ).rowcount
            conn.execute("DELETE FROM seed_in")
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
        self, version: str, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[int]
    ) -> int:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.seed_sync, version, user_ids, item_ids, timestamps
        )

    def seed_from_arrays(
        self, version: str, user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray
    ) -> int:
        """Seed from the model's npz arrays (raw ids already looked up), on the writer thread; blocks.
        A database error is logged and 0 returned (the version is served without the seed)."""
        future = self._executor.submit(
            self.seed_sync, version, user_ids.tolist(), item_ids.tolist(), timestamps.tolist()
        )
        try:
            return future.result()
        except sqlite3.Error:
            log.exception("seeding the history store from %s failed; serving without the seed", version)
            return 0

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._reader.close()
        self._writer.close()
