"""Durable store of shadow comparisons (student answer vs teacher answer) and shadow failures.

Lives in the state db beside the history store. Written only from the shadow worker thread (never
the request path); read by the shadow report. Failures (dropped / error / timeout) are stored as
timestamped counts so `?since=` can count them like the comparisons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import astuple
from pathlib import Path

from app.stores.records import Comparison, ComparisonRows, FailureKind
from core.sqlite import add_column, connect, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow_comparisons (
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    student_version TEXT NOT NULL,
    teacher_version TEXT NOT NULL,
    k INTEGER NOT NULL,
    overlap REAL NOT NULL,
    rbo REAL NOT NULL,
    kendall_tau REAL,
    ndcg REAL NOT NULL,
    student_latency_ms REAL NOT NULL,
    teacher_latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_comparisons_ts ON shadow_comparisons (ts);
CREATE TABLE IF NOT EXISTS shadow_failures (
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    student_version TEXT NOT NULL,
    n INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_failures_ts ON shadow_failures (ts);
"""


class SqliteComparisonStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL"):
        """NORMAL by default: a comparison lost to a power cut is a sample, not a user's data."""
        self._conn = connect(path, synchronous)
        self._conn.executescript(_SCHEMA)
        add_column(self._conn, "shadow_comparisons", "pair", "TEXT NOT NULL DEFAULT 'teacher_vs_student'")
        self._lock = threading.Lock()

    def add(self, comparisons: Iterable[Comparison]) -> None:
        rows = [astuple(c) for c in comparisons]
        if not rows:
            return
        with self._lock, transaction(self._conn) as conn:
            conn.executemany(f"INSERT INTO shadow_comparisons VALUES ({', '.join('?' * 12)})", rows)

    def add_failures(self, counts: dict[tuple[str, FailureKind], int], ts: float | None = None) -> None:
        """Record aggregated failure counts keyed by (student_version, kind)."""
        ts = time.time() if ts is None else ts
        rows = [(ts, kind, version, n) for (version, kind), n in counts.items() if n > 0]
        if not rows:
            return
        with self._lock, transaction(self._conn) as conn:
            conn.executemany("INSERT INTO shadow_failures VALUES (?, ?, ?, ?)", rows)

    def load(self, since: float | None = None) -> ComparisonRows:
        since = float("-inf") if since is None else since
        with self._lock:
            rows = self._conn.execute(
                "SELECT student_version, teacher_version, overlap, rbo, kendall_tau, ndcg, student_latency_ms, "
                "teacher_latency_ms, pair, ts FROM shadow_comparisons WHERE ts >= ? ORDER BY ts",
                (since,),
            ).fetchall()
            fails = self._conn.execute(
                "SELECT student_version, kind, SUM(n) FROM shadow_failures WHERE ts >= ? GROUP BY student_version, kind",
                (since,),
            ).fetchall()
        failures = {(v, k): int(n) for v, k, n in fails}
        return ComparisonRows.from_rows([r[:-1] for r in rows], failures, ts=[r[-1] for r in rows])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
