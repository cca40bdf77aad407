"""Named experiments in the SQLite state db (one replica): one row per experiment, JSON beside its name."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from app.stores.records import ExperimentExists, ExperimentRecord
from core.sqlite import connect, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    record TEXT NOT NULL
);
"""


class SqliteExperimentStore:
    def __init__(self, path: Path, synchronous: str = "FULL"):
        self._conn = connect(path, synchronous)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def create(self, record: ExperimentRecord) -> None:
        try:
            with self._lock, transaction(self._conn) as conn:
                conn.execute(
                    "INSERT INTO experiments VALUES (?, ?, ?)",
                    (record.name, record.started_at, json.dumps(record.to_json())),
                )
        except sqlite3.IntegrityError as exc:
            raise ExperimentExists(f"experiment {record.name!r} exists already") from exc

    def get(self, name: str) -> ExperimentRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM experiments WHERE name = ?", (name,)).fetchone()
        return None if row is None else ExperimentRecord.from_json(json.loads(row[0]))

    def list(self) -> list[ExperimentRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT record FROM experiments ORDER BY started_at, name").fetchall()
        return [ExperimentRecord.from_json(json.loads(r[0])) for r in rows]

    def update(self, record: ExperimentRecord) -> None:
        with self._lock, transaction(self._conn) as conn:
            conn.execute(
                "UPDATE experiments SET started_at = ?, record = ? WHERE name = ?",
                (record.started_at, json.dumps(record.to_json()), record.name),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
