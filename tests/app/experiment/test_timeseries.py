"""Shadow and A/B time series on hand-computed data, and the A/B interval over time against the report."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiment.ab_report import build_ab_report
from app.experiment.ab_timeseries import ab_timeseries
from app.experiment.timeseries import bucket_starts, shadow_timeseries
from app.stores.records import AnswerRows, ComparisonRows

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
    assert shadow_timeseries(untimed, 60)["pairs"][0]["buckets"] == []


def test_bucket_starts_floor_to_multiples() -> None:
    assert bucket_starts(np.array([0.0, 59.9, 60.0, 125.0]), 60).tolist() == [0, 0, 60, 120]


def _answer(ts: float, version: str = "v1", arm: str = "student") -> tuple:
    return (arm, "user:a", ts, 3, 0, 0, 1.0, None, False, version)


def test_shadow_timeseries_by_hand_per_pair_and_bucket() -> None:
    """The v1 pair starts at t = 59: of bucket 0's answers only those from then on count (2 of 3);
    bucket 60 has 8. The teacher arm's answers are never shadowed, so never counted."""
    answers = AnswerRows.from_rows(
        [_answer(30.0), _answer(59.0), _answer(59.5)]
        + [_answer(60.0 + i) for i in range(8)]
        + [_answer(61.0, arm="teacher")]
    )
    out = shadow_timeseries(rows(), 60, answers)
    assert out["bucket_seconds"] == 60
    v1, v2 = out["pairs"]
    assert (v1["student_version"], v1["teacher_version"], v2["teacher_version"]) == ("v1", "v1", "v9")
    assert v1["pair"]["name"] == "student v1 vs teacher v1"  # rows without a pair: teacher vs student
    assert v1["latency_ratio"] == "teacher / student"
    first, second = v1["buckets"]
    assert (first["start"], first["count"], first["overlap@k"], first["kendall_tau"]) == (0, 1, 0.2, None)
    assert (first["served"], first["share_compared"]) == (2, 0.5)  # 1 compared of 2 since the start
    assert second["overlap@k"] == pytest.approx(0.8) and second["kendall_tau"] == pytest.approx(0.5)
    assert second["latency_ratio_p50"] == pytest.approx(3.5)  # median of 8/2 and 3/1
    assert second["share_compared"] == pytest.approx(2 / 8)
    (only,) = v2["buckets"]  # a zero student latency has no ratio; no v2 answers served: no share
    assert (only["start"], only["latency_ratio_p50"], only["share_compared"]) == (120, None, None)
    assert (
        shadow_timeseries(rows(), 60)["pairs"][0]["buckets"][0]["share_compared"] is None
    )  # no answers read


def _ab(arm: str, unit: str, ts: float, impressions: int, clicks: int, purchases: int = 0) -> tuple:
    return (arm, unit, ts, impressions, clicks, purchases, 2.0, None, False, "v1")


def test_ab_timeseries_by_hand_per_bucket_and_cumulative() -> None:
    answers = AnswerRows.from_rows(
        [
            _ab("student", "user:a", 1.0, 5, 1),
            _ab("student", "user:b", 2.0, 5, 0),
            _ab("student", "anonymous", 3.0, 5, 5),  # outside the comparison: counted apart
            _ab("student", "user:a", 61.0, 10, 3, 1),
            _ab("teacher", "user:c", 62.0, 5, 0),
            ("teacher", "user:c", 63.0, 0, 0, 0, None, None, True, "v1"),  # failed: not an answer
        ]
    )
    out = ab_timeseries(answers, ["student", "teacher"], 60)
    assert [b["start"] for b in out["buckets"]] == [0, 60] and out["metric"] == "ctr"
    b0, b1 = out["buckets"]
    assert b0["anonymous_requests"] == 1 and b1["anonymous_requests"] == 0
    s0, t0 = b0["arms"]["student"], b0["arms"]["teacher"]
    assert (s0["users"], s0["requests"], s0["ctr"]["rate"]) == (2, 2, 0.1)
    assert t0["impressions"] == 0 and t0["ctr"]["rate"] is None
    s1 = b1["arms"]["student"]
    assert s1["ctr"]["rate"] == 0.3 and s1["cumulative"]["ctr"]["rate"] == pytest.approx(4 / 20)
    assert s1["cumulative"]["conversion"]["rate"] == pytest.approx(1 / 3)
    assert (s1["users"], s1["cumulative"]["users"]) == (1, 2)  # user:a returns: counted once in total
    assert b1["arms"]["teacher"]["requests"] == 1
    assert b0["difference"]["diff"] is None  # no teacher rate yet
    # After bucket 60: student users a (4 clicks / 15), b (0 / 5); teacher c (0 / 5): one user, no SE.
    assert b1["difference"]["diff"] == pytest.approx(0 - 4 / 20) and b1["difference"]["low"] is None


def test_the_last_point_of_the_interval_over_time_is_the_reports_interval() -> None:
    rng = np.random.default_rng(4)
    rows_ = []
    for i in range(400):
        arm = "student" if i % 2 else "teacher"
        n = int(rng.integers(5, 20))
        rows_.append(
            _ab(arm, f"user:{i}", float(i), n, int(rng.binomial(n, 0.1 if arm == "student" else 0.2)))
        )
    answers = AnswerRows.from_rows(rows_)
    series = ab_timeseries(answers, ["student", "teacher"], 60)
    report = build_ab_report(answers, {"student": 0.5, "teacher": 0.5}, "student", "teacher")
    last = series["buckets"][-1]["difference"]
    ctr = report["comparison"]["ctr"]
    assert (last["low"], last["high"], last["p_value"]) == (ctr["low"], ctr["high"], ctr["p_value"])
    assert last["verdict"] == report["verdict"]["verdict"] == "better"
    widths = [b["difference"]["high"] - b["difference"]["low"] for b in series["buckets"]]
    assert widths == sorted(widths, reverse=True)  # the interval narrows as users come in
