"""The live catalogue overlay in the SQLite state db (one replica): one row per item with an entry
(JSON), and the generation the replicas' pollers compare. The Redis twin is catalogue_redis.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from app.stores.records import CatalogueChange, CatalogueEntry, CatalogueSnapshot
from core.sqlite import connect, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalogue (item_id TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogue_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    generation INTEGER NOT NULL
);
"""
_CHUNK = 500  # ids per `IN (...)`: under SQLite's bound-parameter limit


class SqliteCatalogueStore:
    """`CatalogueStore` on one SQLite file; an update is one IMMEDIATE transaction (read, change,
    write, bump), so two writers never lose each other's changes."""

    def __init__(self, path: Path, synchronous: str = "FULL"):
        self._conn = connect(path, synchronous)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def generation(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT generation FROM catalogue_generation WHERE id = 0").fetchone()
        return 0 if row is None else int(row[0])

    def snapshot(self) -> CatalogueSnapshot:
        with self._lock, transaction(self._conn) as conn:  # one read transaction: a consistent view
            row = conn.execute("SELECT generation FROM catalogue_generation WHERE id = 0").fetchone()
            rows = conn.execute("SELECT item_id, entry FROM catalogue").fetchall()
        entries = {item: CatalogueEntry.from_json(json.loads(raw)) for item, raw in rows}
        return CatalogueSnapshot(0 if row is None else int(row[0]), entries)

    def update(self, item_ids: Sequence[str], change: CatalogueChange) -> int:
        ids = list(dict.fromkeys(item_ids))
        with self._lock, transaction(self._conn, immediate=True) as conn:
            stored: dict[str, str] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                stored.update(
                    conn.execute(f"SELECT item_id, entry FROM catalogue WHERE item_id IN ({marks})", chunk)
                )
            for item in ids:
                raw = stored.get(item)
                entry = change(item, None if raw is None else CatalogueEntry.from_json(json.loads(raw)))
                if entry is None:
                    conn.execute("DELETE FROM catalogue WHERE item_id = ?", (item,))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO catalogue VALUES (?, ?)", (item, json.dumps(entry.to_json()))
                    )
            conn.execute(
                "INSERT INTO catalogue_generation VALUES (0, 1) "
                "ON CONFLICT (id) DO UPDATE SET generation = generation + 1"
            )
            (generation,) = conn.execute(
                "SELECT generation FROM catalogue_generation WHERE id = 0"
            ).fetchone()
        return int(generation)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
