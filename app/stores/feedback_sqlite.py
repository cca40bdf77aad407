"""Durable log of served answers and the feedback (clicks, purchases) users give on them.

Every answer of `/v1/recommend` is logged (request id, experiment, arm, unit, items) so feedback can
be validated after a restart and the A/B report can count impressions per arm. Logging must not add
I/O to the request path, so answers go into an in-memory buffer that a writer thread commits in
batches every `flush_interval` seconds; lookups read the buffer first, so feedback that arrives
before the flush still validates. Feedback itself is rare and committed before the 2xx.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.stores.records import ARM_COUNT_KEYS, AnswerRows, Event, Served
from app.stores.served_log import ServedLog
from core.sqlite import connect, transaction

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
    items TEXT NOT NULL,
    latency_ms REAL,
    fallback TEXT,
    error INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS served_experiment_ts ON served (experiment, ts);
CREATE INDEX IF NOT EXISTS served_ts ON served (ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (request_id, item_id, event)
);
"""


_GUARDRAIL_COLUMNS = (("latency_ms", "REAL"), ("fallback", "TEXT"), ("error", "INTEGER NOT NULL DEFAULT 0"))


class SqliteFeedbackStore(ServedLog):
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
        self._add_guardrail_columns()
        super().__init__(flush_interval, clock, "feedback-writer")

    def _describe(self) -> str:
        return str(self._path)

    def _add_guardrail_columns(self) -> None:
        """A state db written before answers carried latency, fallback and failure gets the columns
        (NULL latency and fallback, no failure: unknown for the old rows, never guessed)."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(served)")}
        for column, kind in _GUARDRAIL_COLUMNS:
            if column not in have:
                self._conn.execute(f"ALTER TABLE served ADD COLUMN {column} {kind}")

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
                s.latency_ms,
                s.fallback,
                int(s.error),
            )
            for s in batch
        ]
        with transaction(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO served (request_id, ts, experiment, arm, forced, unit, model_version, "
                "n_items, items, latency_ms, fallback, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _record_feedback(self, request_id: str, item_id: str, event: Event) -> bool:
        with self._io_lock:
            self._flush_io_locked()  # the answer must be durable before feedback that points at it
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)",
                (request_id, item_id, event, self._clock()),
            )
        return cur.rowcount == 0

    # -- reporting --------------------------------------------------------------------------------
    @staticmethod
    def _window(
        where: str, experiment: str | None, since: float | None, until: float | None
    ) -> tuple[str, list[Any]]:
        params: list[Any] = []
        if experiment is not None:
            where += " AND s.experiment = ?"
            params.append(experiment)
        if since is not None:
            where += " AND s.ts >= ?"
            params.append(since)
        if until is not None:
            where += " AND s.ts < ?"
            params.append(until)
        return where, params

    def _counts(
        self, experiment: str, since: float | None, until: float | None, bucket: int | None
    ) -> dict[int, dict[str, dict[str, int]]]:
        """Two grouped queries (answers, then their feedback), grouped by bucket too when asked."""
        self.flush()
        where, params = self._window("s.forced = 0 AND s.error = 0", experiment, since, until)
        start = "0" if bucket is None else f"CAST(s.ts / {int(bucket)} AS INTEGER) * {int(bucket)}"
        with self._io_lock:
            base = self._conn.execute(
                f"SELECT {start} AS b, arm, COUNT(DISTINCT CASE WHEN unit != 'anonymous' THEN unit END), "
                f"COUNT(*), SUM(n_items) FROM served s WHERE {where} GROUP BY b, arm",
                params,
            ).fetchall()
            events = self._conn.execute(
                f"SELECT {start} AS b, s.arm, f.event, COUNT(*), COUNT(DISTINCT f.request_id) FROM feedback f "
                f"JOIN served s ON s.request_id = f.request_id WHERE {where} GROUP BY b, s.arm, f.event",
                params,
            ).fetchall()
        out: dict[int, dict[str, dict[str, int]]] = {}
        for b, arm, units, requests, impressions in base:
            counts = dict.fromkeys(ARM_COUNT_KEYS, 0)
            counts.update(users=units, requests=requests, impressions=impressions or 0)
            out.setdefault(int(b), {})[arm] = counts
        for b, arm, event, n, n_requests in events:
            counts = out.setdefault(int(b), {}).setdefault(arm, {})
            counts["clicks" if event == "click" else "purchases"] = n
            if event == "purchase":
                counts["purchase_requests"] = n_requests
        return out

    def answer_rows(
        self, experiment: str | None, since: float | None = None, until: float | None = None
    ) -> AnswerRows:
        """One row per answer of the window (FeedbackStore.answer_rows), with its distinct clicks and
        purchases."""
        self.flush()
        where, params = self._window("s.forced = 0", experiment, since, until)
        with self._io_lock:
            rows = self._conn.execute(
                "SELECT s.arm, s.unit, s.ts, s.n_items, COALESCE(f.clicks, 0), COALESCE(f.purchases, 0), "
                "s.latency_ms, s.fallback, s.error, s.model_version FROM served s "
                "LEFT JOIN (SELECT request_id, SUM(event = 'click') AS clicks, "
                "SUM(event = 'purchase') AS purchases FROM feedback GROUP BY request_id) f "
                f"ON f.request_id = s.request_id WHERE {where} ORDER BY s.ts",
                params,
            ).fetchall()
        return AnswerRows.from_rows(rows)

    def served_counts(self, since: float | None = None, until: float | None = None) -> dict[str, int]:
        """Answers served in [since, until), per model version, every experiment and arm included."""
        self.flush()
        with self._io_lock:
            rows = self._conn.execute(
                "SELECT model_version, COUNT(*) FROM served WHERE ts >= ? AND ts < ? AND error = 0 "
                "GROUP BY model_version",
                (float("-inf") if since is None else since, float("inf") if until is None else until),
            ).fetchall()
        return {version: int(n) for version, n in rows}

    def delete_experiment(self, experiment: str) -> int:
        """Delete the experiment's served answers and their feedback (a reset); returns answers deleted."""
        self.flush()
        with self._io_lock, transaction(self._conn) as conn:
            conn.execute(
                "DELETE FROM feedback WHERE request_id IN (SELECT request_id FROM served WHERE experiment = ?)",
                (experiment,),
            )
            return conn.execute("DELETE FROM served WHERE experiment = ?", (experiment,)).rowcount

    def close(self) -> None:
        """Stop the writer and commit what is buffered: a clean restart loses nothing."""
        self._stop_writer()
        with self._io_lock:
            self._flush_io_locked()
            self._conn.close()
