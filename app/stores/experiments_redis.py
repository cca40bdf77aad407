"""Named experiments in Redis, shared by every replica: the hash `<prefix>experiments`, name -> JSON."""

from __future__ import annotations

import json

from app.stores.records import ExperimentExists, ExperimentRecord
from app.stores.redis_client import sync_client


class RedisExperimentStore:
    def __init__(self, url: str, prefix: str = "recdistill:", timeout: float = 5.0):
        self._r = sync_client(url, timeout)
        self._key = f"{prefix}experiments"

    def create(self, record: ExperimentRecord) -> None:
        if not self._r.hsetnx(self._key, record.name, json.dumps(record.to_json())):  # atomic: one winner
            raise ExperimentExists(f"experiment {record.name!r} exists already")

    def get(self, name: str) -> ExperimentRecord | None:
        raw = self._r.hget(self._key, name)
        return None if raw is None else ExperimentRecord.from_json(json.loads(raw))

    def list(self) -> list[ExperimentRecord]:
        records = [ExperimentRecord.from_json(json.loads(v)) for v in self._r.hvals(self._key)]
        return sorted(records, key=lambda r: (r.started_at, r.name))

    def update(self, record: ExperimentRecord) -> None:
        self._r.hset(self._key, record.name, json.dumps(record.to_json()))

    def close(self) -> None:
        self._r.close()
