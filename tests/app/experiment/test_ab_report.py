"""The `/v1/ab/report` body from hand-made per-user tables: the user-level comparison, the verdict in
words with its MDE and sample size, and the per-impression test kept beside it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiment.ab_report import build_ab_report
from app.experiment.ab_stats import Z_95, Z_POWER_80
from app.stores.records import UnitSums

HALF = {"student": 0.5, "teacher": 0.5}


def sums(units: list[str], clicks: list[int], impressions: list[int]) -> UnitSums:
    n = len(units)
    ones = [1] * n
    return UnitSums.from_rows(list(zip(units, ones, impressions, clicks, [0] * n, [0] * n, strict=True)))


def counts(s: UnitSums) -> dict[str, int]:
    return {
        "users": len(s),
        "requests": int(s.requests.sum()),
        "impressions": int(s.impressions.sum()),
        "clicks": int(s.clicks.sum()),
        "purchases": 0,
        "purchase_requests": 0,
    }


# The tables of test_ab_stats: control (student) R = 1/3 with Var 7/432, treatment (teacher) R = 1/2
# with Var 1/48; difference 1/6 with SE 1/sqrt(27).
STUDENT = sums(["user:a", "user:b", "user:c"], [1, 0, 3], [4, 2, 6])
TEACHER = sums(["user:d", "user:e", "user:f"], [2, 2, 2], [4, 2, 6])


def report(student: UnitSums, teacher: UnitSums, shares: dict[str, float] = HALF) -> dict:
    body = build_ab_report(
        {"student": counts(student), "teacher": counts(teacher)},
        shares,
        {"student": student, "teacher": teacher},
    )
    return body  # type: ignore[return-value]


def test_user_level_comparison_and_verdict_by_hand() -> None:
    body = report(STUDENT, TEACHER)
    ctr = body["teacher_vs_student"]["ctr"]
    se = 1 / math.sqrt(27)
    assert ctr["diff"] == pytest.approx(1 / 6) and ctr["se"] == pytest.approx(se, rel=1e-12)
    assert (ctr["low"], ctr["high"]) == (pytest.approx(1 / 6 - Z_95 * se), pytest.approx(1 / 6 + Z_95 * se))
    assert ctr["p_value"] == pytest.approx(0.3864762307712327, rel=1e-9)
    assert ctr["relative"]["lift"] == pytest.approx(0.5)
    assert ctr["mde"] == pytest.approx((Z_95 + Z_POWER_80) * se, rel=1e-12)
    assert ctr["verdict"] == "not yet"
    # The old test pools 4/12 vs 6/12 impressions: z = (1/6) / sqrt(5/12 * 7/12 * 2/12) = 0.8281.
    assert ctr["per_impression"]["z"] == pytest.approx(0.8280786712108251, rel=1e-9)
    v = body["verdict"]
    assert (v["metric"], v["control"], v["treatment"], v["verdict"]) == (
        "ctr",
        "student",
        "teacher",
        "not yet",
    )
    assert v["users_needed"] == {"student": 3140, "teacher": 3140}  # test_ab_stats.test_users_needed_by_hand
    assert v["more_users_needed"] == {"student": 3137, "teacher": 3137}
    assert v["summary"].startswith("not yet") and "3140 student and 3140 teacher users" in v["summary"]
    student = body["per_user"]["student"]
    assert (student["units"], student["impressions"], student["clicks"]) == (3, 12, 4)
    assert student["metrics"]["ctr"]["se"] == pytest.approx(math.sqrt(7 / 432), rel=1e-12)
    assert student["metrics"]["ctr"]["low"] == pytest.approx(1 / 3 - Z_95 * math.sqrt(7 / 432))
    assert student["metrics"]["conversion"]["rate"] == 0.0  # no purchases in these tables


def test_a_clear_win_is_better_and_a_clear_loss_worse() -> None:
    rng = np.random.default_rng(0)
    impressions = rng.integers(5, 15, 400).tolist()
    low = [int(v) for v in rng.binomial(impressions, 0.05)]
    high = [int(v) for v in rng.binomial(impressions, 0.15)]
    units = [f"user:{i}" for i in range(400)]
    win = report(sums(units, low, impressions), sums(units, high, impressions))
    assert win["verdict"]["verdict"] == "better" and win["teacher_vs_student"]["ctr"]["low"] > 0
    assert win["verdict"]["summary"].startswith("teacher is better than student")
    assert win["verdict"]["users_needed"] is None  # nothing more to wait for
    loss = report(sums(units, high, impressions), sums(units, low, impressions))
    assert loss["verdict"]["verdict"] == "worse" and loss["teacher_vs_student"]["ctr"]["p_value"] < 0.05


def test_a_sample_ratio_mismatch_holds_the_verdict() -> None:
    rng = np.random.default_rng(1)
    imp_s, imp_t = rng.integers(5, 15, 600).tolist(), rng.integers(5, 15, 300).tolist()
    student = sums([f"s{i}" for i in range(600)], [int(v) for v in rng.binomial(imp_s, 0.05)], imp_s)
    teacher = sums([f"t{i}" for i in range(300)], [int(v) for v in rng.binomial(imp_t, 0.15)], imp_t)
    body = report(student, teacher)  # 600 vs 300 users on a 50/50 split
    assert body["srm"]["mismatch"] and body["teacher_vs_student"]["ctr"]["verdict"] == "better"
    assert body["verdict"]["verdict"] == "not yet"
    assert "sample ratio mismatch" in body["verdict"]["summary"]


def test_too_few_users_and_a_closed_arm() -> None:
    one = sums(["user:a"], [1], [3])
    body = report(one, TEACHER)
    assert body["teacher_vs_student"]["ctr"]["diff"] == pytest.approx(0.5 - 1 / 3)
    assert body["teacher_vs_student"]["ctr"]["p_value"] is None
    assert body["verdict"]["verdict"] == "not yet" and "at least 2 users" in body["verdict"]["summary"]
    closed = report(STUDENT, sums([], [], []), {"student": 1.0, "teacher": 0.0})
    assert closed["verdict"]["users_needed"] is None  # no teacher share: no sample size to quote
    assert closed["per_user"]["teacher"]["units"] == 0
