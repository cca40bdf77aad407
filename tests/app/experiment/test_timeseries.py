"""Shadow and A/B time series on hand-computed data."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiment.timeseries import ab_timeseries, bucket_starts, shadow_timeseries
from app.stores.records import ComparisonRows

nan = float("nan")


def rows() -> ComparisonRows:
    return ComparisonRows(
        student_version=np.array(["v1", "v1", "v1", "v2"]),
        teacher_version=np.array(["v1", "v1", "v1", "v9"]),
        metrics={
            "overlap": np.array([0.2, 0.6, 1.0, 0.5]),
            "rbo": np.array([0.1, 0.3, 0.9, 0.5]),
            "kendall_tau": np.array([nan, 1.0, 0.0, nan]),
            "ndcg": np.array([0.5, 0.7, 1.0, 0.4]),
        },
        student_latency_ms=np.array([1.0, 2.0, 1.0, 0.0]),
        teacher_latency_ms=np.array([2.0, 8.0, 3.0, 5.0]),
        failures={},
        ts=np.array([59.0, 61.0, 119.0, 125.0]),
    )


def test_rows_without_times_are_left_out() -> None:
    untimed = ComparisonRows(
        student_version=np.array(["v1"]),
        teacher_version=np.array(["v1"]),
        metrics={m: np.array([0.5]) for m in ("overlap", "rbo", "kendall_tau", "ndcg")},
        student_latency_ms=np.array([1.0]),
        teacher_latency_ms=np.array([2.0]),
        failures={},
    )
    assert shadow_timeseries(untimed, 60, {})["pairs"][0]["buckets"] == []


def test_bucket_starts_floor_to_multiples() -> None:
    assert bucket_starts(np.array([0.0, 59.9, 60.0, 125.0]), 60).tolist() == [0, 0, 60, 120]


def test_shadow_timeseries_by_hand_per_pair_and_bucket() -> None:
    out = shadow_timeseries(rows(), 60, {0: 4, 60: 8})  # the control's answers per bucket
    assert out["bucket_seconds"] == 60
    v1, v2 = out["pairs"]
    assert (v1["student_version"], v1["teacher_version"], v2["teacher_version"]) == ("v1", "v1", "v9")
    assert v1["pair"]["name"] == "student v1 vs teacher v1"  # rows without a pair: teacher vs student
    first, second = v1["buckets"]
    assert (first["start"], first["count"], first["overlap@k"], first["kendall_tau"]) == (0, 1, 0.2, None)
    assert first["share_compared"] == 0.25  # 1 compared of the student's 4 answers
    assert second["overlap@k"] == pytest.approx(0.8) and second["kendall_tau"] == pytest.approx(0.5)
    assert second["latency_ratio_p50"] == pytest.approx(3.5)  # median of 8/2 and 3/1
    assert second["share_compared"] == pytest.approx(2 / 8)
    (only,) = v2["buckets"]  # a zero student latency has no ratio; no answers served: no share
    assert (only["start"], only["latency_ratio_p50"], only["share_compared"]) == (120, None, None)


def test_ab_timeseries_by_hand_per_bucket_and_cumulative() -> None:
    counts = {
        0: {"student": {"users": 2, "requests": 2, "impressions": 10, "clicks": 1, "purchases": 0, "purchase_requests": 0}},
        60: {
            "student": {"users": 1, "requests": 2, "impressions": 10, "clicks": 3, "purchases": 1, "purchase_requests": 1},
            "teacher": {"users": 1, "requests": 1, "impressions": 5, "clicks": 0, "purchases": 0, "purchase_requests": 0},
        },
    }  # fmt: skip
    out = ab_timeseries(counts, ["student", "teacher"], 60)
    assert [b["start"] for b in out["buckets"]] == [0, 60]
    s0, t0 = out["buckets"][0]["arms"]["student"], out["buckets"][0]["arms"]["teacher"]
    assert s0["ctr"]["rate"] == 0.1 and t0["impressions"] == 0 and t0["ctr"]["rate"] is None
    s1 = out["buckets"][1]["arms"]["student"]
    assert s1["ctr"]["rate"] == 0.3 and s1["cumulative"]["ctr"]["rate"] == pytest.approx(4 / 20)
    assert s1["cumulative"]["conversion"]["rate"] == pytest.approx(1 / 4)
    assert "users" not in s1["cumulative"]  # users return: they cannot be summed over buckets
    low, high = s1["cumulative"]["ctr"]["low"], s1["cumulative"]["ctr"]["high"]
    assert low < 0.2 < high
