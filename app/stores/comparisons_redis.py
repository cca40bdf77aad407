"""Redis-backed shadow comparisons and failure counts, so `/v1/shadow/report` covers every replica.

Layout (under `prefix`): `cmp` sorted set of comparisons (JSON member, score ts), `cmp_fail` of
failure counts (JSON member with a unique id, score ts).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import astuple
from typing import Any

from app.stores.records import Comparison, ComparisonRows, FailureKind
from app.stores.redis_client import sync_client


class RedisComparisonStore:
    """Shadow comparisons and failure counts shared by all replicas."""

    def __init__(self, url: str, prefix: str = "recdistill:", timeout: float = 5.0):
        self._r = sync_client(url, timeout)
        self.prefix = prefix

    def add(self, comparisons: Iterable[Comparison]) -> None:
        mapping = {json.dumps(astuple(c)): c.ts for c in comparisons}
        if mapping:
            self._r.zadd(f"{self.prefix}cmp", mapping)

    def add_failures(self, counts: dict[tuple[str, FailureKind], int], ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        mapping = {
            json.dumps([version, kind, n, uuid.uuid4().hex]): ts
            for (version, kind), n in counts.items()
            if n > 0
        }
        if mapping:
            self._r.zadd(f"{self.prefix}cmp_fail", mapping)

    def load(self, since: float | None = None) -> ComparisonRows:
        low: Any = "-inf" if since is None else since
        rows = [json.loads(m) for m in self._r.zrangebyscore(f"{self.prefix}cmp", low, "+inf")]
        failures: dict[tuple[str, str], int] = {}
        for member in self._r.zrangebyscore(f"{self.prefix}cmp_fail", low, "+inf"):
            version, kind, n, _ = json.loads(member)
            failures[(version, kind)] = failures.get((version, kind), 0) + int(n)
        # astuple order: request_id, ts, student_version, teacher_version, k, overlap, rbo, tau, ndcg,
        # lat_s, lat_t[, pair] (members written before pairs existed end at lat_t)
        return ComparisonRows.from_rows(
            [(r[2], r[3], *r[5:]) for r in rows], failures, ts=[r[1] for r in rows]
        )

    def close(self) -> None:
        self._r.close()
