"""The last hour of the service's own traffic, for the dashboard's overview: request rate, errors and
latency percentiles per time bucket.

Prometheus counters only hold totals since start. A `TrafficRing` (held on `app.state` by the
lifespan, never a global) snapshots those totals every `interval` seconds from a background task and
keeps the last hour of snapshots; a bucket's figures are the differences between consecutive
snapshots. The request path is untouched: sampling reads the counters, it adds nothing per request.
Percentiles are read from the latency histogram's bucket counts with linear interpolation inside the
bucket, as Prometheus' `histogram_quantile` does (so they are only as fine as LATENCY_BUCKETS).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.metrics import LATENCY_BUCKETS, Metrics

QUANTILES = (0.5, 0.95, 0.99)
HOUR = 3600.0


@dataclass(frozen=True)
class Snapshot:
    """Counter totals at one instant, per endpoint (the route template)."""

    ts: float
    requests: dict[str, np.ndarray]  # endpoint -> int64 [3]: all, 4xx, 5xx
    latency: dict[str, np.ndarray]  # endpoint -> int64 [len(LATENCY_BUCKETS) + 1]: per bucket, not cumulative


def take_snapshot(metrics: Metrics, ts: float) -> Snapshot:
    """Read the request counter and the latency histogram as they are now."""
    requests: dict[str, np.ndarray] = {}
    for family in metrics.requests.collect():
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            row = requests.setdefault(s.labels["endpoint"], np.zeros(3, np.int64))
            status = s.labels["status"]
            row += np.array([1, status.startswith("4"), status.startswith("5")], np.int64) * int(s.value)
    edges = [*LATENCY_BUCKETS, math.inf]
    cumulative: dict[str, np.ndarray] = {}
    for family in metrics.latency.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                row = cumulative.setdefault(s.labels["endpoint"], np.zeros(len(edges), np.int64))
                row[edges.index(float(s.labels["le"]))] = int(s.value)
    latency = {e: np.diff(c, prepend=0) for e, c in cumulative.items()}
    return Snapshot(ts, requests, latency)


def quantile(counts: np.ndarray, q: float) -> float | None:
    """The q-quantile (seconds) of observations binned by LATENCY_BUCKETS (+Inf last); None if none.

    Linear inside the bucket the rank falls in, from its lower edge (0 for the first); in the +Inf
    bucket, the last finite edge (nothing better is known)."""
    total = int(counts.sum())
    if total == 0:
        return None
    rank = q * total
    cumulative = np.cumsum(counts)
    i = int(np.searchsorted(cumulative, rank, side="left"))
    if i >= len(LATENCY_BUCKETS):
        return float(LATENCY_BUCKETS[-1])
    lower = 0.0 if i == 0 else LATENCY_BUCKETS[i - 1]
    before = 0 if i == 0 else int(cumulative[i - 1])
    inside = int(counts[i])
    return float(lower + (LATENCY_BUCKETS[i] - lower) * (rank - before) / inside)


def _delta(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], keep: Callable[[str], bool]
) -> np.ndarray | None:
    rows = [b[e] - a.get(e, 0) for e in b if keep(e)]
    return np.sum(rows, axis=0) if rows else None


def timeseries(
    snapshots: Iterable[Snapshot], bucket_seconds: float, keep: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """Per bucket (start, epoch seconds): requests, 4xx, 5xx, rate (requests/s over the seconds the
    snapshots cover) and latency p50/p95/p99 in ms, over the endpoints `keep` accepts.

    Each pair of consecutive snapshots adds its difference to the bucket its later snapshot falls in."""
    buckets: dict[float, dict[str, Any]] = {}
    ordered = sorted(snapshots, key=lambda s: s.ts)
    for a, b in zip(ordered, ordered[1:], strict=False):
        start = math.floor(b.ts / bucket_seconds) * bucket_seconds
        acc = buckets.setdefault(
            start,
            {
                "seconds": 0.0,
                "requests": np.zeros(3, np.int64),
                "latency": np.zeros(len(LATENCY_BUCKETS) + 1, np.int64),
            },
        )
        acc["seconds"] += b.ts - a.ts
        for key, field in (("requests", "requests"), ("latency", "latency")):
            delta = _delta(getattr(a, field), getattr(b, field), keep)
            if delta is not None:
                acc[key] += delta
    out = []
    for start in sorted(buckets):
        acc = buckets[start]
        n, n4, n5 = (int(x) for x in acc["requests"])
        row: dict[str, Any] = {
            "start": start,
            "seconds": acc["seconds"],
            "requests": n,
            "errors_4xx": n4,
            "errors_5xx": n5,
            "rate": n / acc["seconds"] if acc["seconds"] > 0 else None,
        }
        for q in QUANTILES:
            value = quantile(acc["latency"], q)
            row[f"p{round(q * 100)}_ms"] = None if value is None else value * 1000
        out.append(row)
    return out


class TrafficRing:
    """The last hour of snapshots of one app's metrics; `sample` is called by `run` (the lifespan's task)."""

    def __init__(self, metrics: Metrics, interval: float, clock: Callable[[], float] = time.time):
        self.metrics, self.interval, self.clock = metrics, interval, clock
        self._ring: deque[Snapshot] = deque(maxlen=int(HOUR // interval) + 2)

    def sample(self) -> Snapshot:
        snapshot = take_snapshot(self.metrics, self.clock())
        self._ring.append(snapshot)
        return snapshot

    def series(self, bucket_seconds: float, keep: Callable[[str], bool]) -> list[dict[str, Any]]:
        """`timeseries` over the ring plus a snapshot taken now (so the current bucket is up to date)."""
        return timeseries([*self._ring, take_snapshot(self.metrics, self.clock())], bucket_seconds, keep)

    async def run(self) -> None:
        """Sample at start, then every `interval` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval)
