"""The traffic ring's arithmetic on hand-made snapshots, and on a real Metrics object."""

from __future__ import annotations

import numpy as np
import pytest

from app.metrics import LATENCY_BUCKETS, Metrics
from app.ui.traffic import Snapshot, TrafficRing, quantile, take_snapshot, timeseries

N_BUCKETS = len(LATENCY_BUCKETS) + 1


def latency(**at: int) -> np.ndarray:
    """Per-bucket counts: latency(b3=4) puts 4 observations in bucket index 3 (0.002-0.003 s)."""
    counts = np.zeros(N_BUCKETS, np.int64)
    for key, n in at.items():
        counts[int(key[1:])] = n
    return counts


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    # 10 observations: 4 in (0, 0.5 ms], 6 in (1 ms, 2 ms]
    counts = latency(b0=4, b2=6)
    assert quantile(counts, 0.2) == pytest.approx(0.0005 * 2 / 4)  # rank 2 of the first bucket's 4
    assert quantile(counts, 0.7) == pytest.approx(0.001 + 0.001 * 3 / 6)  # rank 7: 3rd of bucket 2's 6
    assert quantile(latency(b14=5), 0.99) == LATENCY_BUCKETS[-1]  # +Inf bucket: the last finite edge
    assert quantile(np.zeros(N_BUCKETS, np.int64), 0.5) is None


def test_timeseries_by_hand_differences_of_consecutive_snapshots() -> None:
    def snap(ts: float, total: int, n4: int, lat: np.ndarray, ui: int = 0) -> Snapshot:
        requests = {"/v1/recommend": np.array([total, n4, 0]), "/ui/overview": np.array([ui, 0, 0])}
        return Snapshot(ts, requests, {"/v1/recommend": lat, "/ui/overview": latency(b0=ui)})

    snaps = [
        snap(100.0, 0, 0, latency()),
        snap(110.0, 10, 1, latency(b2=10), ui=5),  # bucket 60 (110 // 60 * 60)
        snap(130.0, 30, 1, latency(b2=10, b4=20), ui=9),  # bucket 120
        snap(170.0, 30, 1, latency(b2=10, b4=20), ui=9),  # bucket 120, nothing new
    ]
    rows = timeseries(reversed(snaps), 60, keep=lambda e: not e.startswith("/ui"))
    assert [(r["start"], r["seconds"], r["requests"], r["errors_4xx"]) for r in rows] == [
        (60, 10.0, 10, 1),
        (120, 60.0, 20, 0),
    ]
    assert rows[0]["rate"] == pytest.approx(1.0) and rows[1]["rate"] == pytest.approx(20 / 60)
    assert rows[1]["p50_ms"] == pytest.approx(3.0 + 2.0 * 10 / 20)  # 10th of 20 in (3 ms, 5 ms]
    everything = timeseries(snaps, 60, keep=lambda e: True)
    assert everything[0]["requests"] == 15


def test_the_ring_reads_the_apps_own_counters_and_keeps_an_hour() -> None:
    metrics, now = Metrics(), [1000.0]
    ring = TrafficRing(metrics, interval=10.0, clock=lambda: now[0])
    ring.sample()
    metrics.observe_request("/v1/recommend", "POST", 200, 0.0012)
    metrics.observe_request("/v1/recommend", "POST", 503, 0.0001)
    now[0] = 1015.0
    (row,) = ring.series(60, keep=lambda e: True)
    assert (row["start"], row["requests"], row["errors_5xx"]) == (960, 2, 1)
    assert take_snapshot(metrics, 0.0).requests["/v1/recommend"].tolist() == [2, 0, 1]
    for _ in range(1000):
        ring.sample()
    assert len(ring._ring) == 3600 // 10 + 2
