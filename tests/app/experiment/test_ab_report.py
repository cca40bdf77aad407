"""The `/v1/ab/report` body from hand-made answers: the always-valid comparison and its fixed-horizon
reading, the verdict in words agreeing with its numbers, the guardrails that stop an experiment,
CUPED, anonymous traffic kept apart, a stopped experiment, and when it can be expected to conclude."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiment.ab_report import build_ab_report
from app.experiment.proportions import Z_95, Z_POWER_80
from app.stores.records import AnswerRows, UnitSums

HALF = {"student": 0.5, "teacher": 0.5}


def answers(
    arm: str,
    units: list[str],
    clicks: list[int],
    impressions: list[int],
    latency: float = 5.0,
    fallback: bool = False,
    error: bool = False,
    ts: float = 1000.0,
) -> list[tuple]:
    """One answer per unit, as FeedbackStore.answer_rows returns them."""
    return [
        (arm, u, ts, n, c, 0, latency, "popular" if fallback else None, error, "v1")
        for u, c, n in zip(units, clicks, impressions, strict=True)
    ]


def rows(*parts: list[tuple]) -> AnswerRows:
    return AnswerRows.from_rows([r for part in parts for r in part])


# The tables of test_ab_stats: control (student) R = 1/3 with Var 7/432, treatment (teacher) R = 1/2
# with Var 1/48; difference 1/6 with SE 1/sqrt(27).
STUDENT = answers("student", ["user:a", "user:b", "user:c"], [1, 0, 3], [4, 2, 6])
TEACHER = answers("teacher", ["user:d", "user:e", "user:f"], [2, 2, 2], [4, 2, 6])


def report(*parts: list[tuple], shares: dict[str, float] = HALF, **kwargs: object) -> dict:
    return build_ab_report(rows(*parts), shares, "student", "teacher", **kwargs)  # type: ignore[arg-type]


def _users(arm: str, n: int, rate: float, seed: int, prefix: str = "user:") -> list[tuple]:
    rng = np.random.default_rng(seed)
    impressions = rng.integers(5, 15, n).tolist()
    clicks = [int(v) for v in rng.binomial(impressions, rate)]
    return answers(arm, [f"{prefix}{arm}{i}" for i in range(n)], clicks, impressions)


def test_always_valid_comparison_and_verdict_by_hand() -> None:
    body = report(STUDENT, TEACHER)
    ctr = body["comparison"]["ctr"]
    se = 1 / math.sqrt(27)
    c = 7.99064434910968117  # test_ab_stats.test_ratio_difference_by_hand
    assert ctr["method"] == "always_valid" and ctr["critical_value"] == pytest.approx(c, rel=1e-12)
    assert ctr["diff"] == pytest.approx(1 / 6) and ctr["se"] == pytest.approx(se, rel=1e-12)
    assert (ctr["low"], ctr["high"]) == (pytest.approx(1 / 6 - c * se), pytest.approx(1 / 6 + c * se))
    assert ctr["p_value"] == 1.0 and ctr["verdict"] == "not yet"
    assert ctr["relative"]["low"] == pytest.approx(3 * ctr["low"])  # the same interval over R_c
    # The fixed-horizon reading of the same tables is kept apart, and the old per-impression test.
    fixed = ctr["fixed_horizon"]
    assert fixed["p_value"] == pytest.approx(0.3864762307712327, rel=1e-9)
    assert fixed["low"] == pytest.approx(1 / 6 - Z_95 * se) and fixed["mde"] == pytest.approx(
        (Z_95 + Z_POWER_80) * se
    )
    assert ctr["per_impression"]["z"] == pytest.approx(0.8280786712108251, rel=1e-9)
    v = body["verdict"]
    assert (v["metric"], v["control"], v["treatment"], v["verdict"], v["method"]) == (
        "ctr", "student", "teacher", "not yet", "always_valid",
    )  # fmt: skip
    assert body["verdict_uses"] == "always_valid" and "per user" in v["metric_definition"]
    assert (v["low"], v["high"], v["p_value"]) == (ctr["low"], ctr["high"], ctr["p_value"])
    # Sized for the planned 15% lift: δ = 0.15 / 3 = 0.05, τ = 0.0625 so τ/δ = 1.25; s solves
    # s = c(1.25² s²) + z_0.8: s = 3.94011928344626 (mpmath); per arm (s / δ)² × 16/144 = 689.98 -> 690.
    n = 690
    assert v["users_needed"] == {"student": n, "teacher": n}
    assert v["more_users_needed"] == {"student": n - 3, "teacher": n - 3}
    assert body["fixed_horizon"]["users_needed"]["student"] < n  # the fixed horizon needs fewer, read once
    assert v["summary"].startswith("not yet — teacher vs student on CTR per user: +50.00% relative")
    assert f"planned 15% lift needs about {n:,} users per arm" in v["summary"]
    student = body["per_user"]["student"]
    assert (student["units"], student["impressions"], student["clicks"]) == (3, 12, 4)
    assert student["metrics"]["ctr"]["se"] == pytest.approx(math.sqrt(7 / 432), rel=1e-12)


def test_a_clear_win_is_better_and_its_sentence_quotes_an_interval_above_zero() -> None:
    win = report(_users("student", 600, 0.05, 0), _users("teacher", 600, 0.10, 1))
    v = win["verdict"]
    assert v["verdict"] == "better" and v["low"] > 0 and v["p_value"] < 0.05
    assert v["relative"]["low"] > 0 and v["summary"].startswith("teacher is better than student")
    low, high = v["relative"]["low"], v["relative"]["high"]
    assert f"(always-valid 95% interval {low:+.2%} to {high:+.2%})" in v["summary"]
    assert v["expected_conclusion"] is None
    loss = report(_users("student", 600, 0.10, 2), _users("teacher", 600, 0.05, 3))
    assert loss["verdict"]["verdict"] == "worse" and loss["verdict"]["high"] < 0


def test_a_sample_ratio_mismatch_stops_the_experiment() -> None:
    body = report(_users("student", 600, 0.05, 4), _users("teacher", 300, 0.10, 5))  # 600 vs 300 on 50/50
    assert body["srm"]["mismatch"] and body["srm"]["always_valid_p"] < 0.001
    assert body["comparison"]["ctr"]["verdict"] == "better"  # the metric alone would say better
    assert body["verdict"]["verdict"] == "stop: sample ratio mismatch"
    assert "sample ratio mismatch" in body["verdict"]["summary"]


def test_a_slower_treatment_is_stopped_by_the_latency_guardrail_whatever_ctr_says() -> None:
    """The teacher's answers take 1.5x as long: most of the answers above the pooled p99 are its."""
    lat = np.random.default_rng(6).lognormal(1.5, 0.3, 6000)
    student = [(*r[:6], float(lat[i]), *r[7:]) for i, r in enumerate(_users("student", 3000, 0.05, 6))]
    teacher = [
        (*r[:6], 1.5 * float(lat[3000 + i]), *r[7:]) for i, r in enumerate(_users("teacher", 3000, 0.10, 7))
    ]
    body = report(student, teacher)
    g = body["guardrails"]
    assert g["arms"]["teacher"]["latency_p99_ms"] > 1.3 * g["arms"]["student"]["latency_p99_ms"]
    assert g["tests"]["latency_p99"]["status"] == "worse" and g["tests"]["latency_p99"]["low"] > 0
    assert g["tests"]["error_rate"]["status"] == "ok" and g["tests"]["fallback_share"]["status"] == "ok"
    assert body["comparison"]["ctr"]["verdict"] == "better"
    assert body["verdict"]["verdict"] == "stop: latency p99"
    assert body["verdict"]["summary"].startswith("stop: latency p99 — teacher is significantly worse")


def test_errors_and_fallbacks_are_guardrails_too() -> None:
    student = _users("student", 400, 0.05, 8)
    failed = answers(
        "teacher", [f"user:teacher{i}" for i in range(0, 400, 4)], [0] * 100, [0] * 100, error=True
    )
    body = report(student, _users("teacher", 400, 0.05, 9), failed)
    g = body["guardrails"]
    assert g["arms"]["teacher"]["errors"] == 100 and g["arms"]["teacher"]["error_rate"] == pytest.approx(0.2)
    assert body["verdict"]["verdict"] == "stop: error rate"
    assert body["arms"]["teacher"]["requests"] == 400  # failed answers are not counted as answers
    fallback = [
        (*r[:7], "popular" if i % 3 == 0 else None, *r[8:])
        for i, r in enumerate(_users("teacher", 400, 0.05, 9))
    ]
    assert report(student, fallback)["verdict"]["verdict"] == "stop: popular-fallback share"


def test_identical_arms_are_never_stopped_by_a_guardrail() -> None:
    rng = np.random.default_rng(10)
    student, teacher = _users("student", 800, 0.05, 11), _users("teacher", 800, 0.05, 12)
    lat = rng.lognormal(1.5, 0.4, 1600)
    body = report(
        [(*r[:6], float(lat[i]), *r[7:]) for i, r in enumerate(student)],
        [(*r[:6], float(lat[800 + i]), *r[7:]) for i, r in enumerate(teacher)],
    )
    assert body["guardrails"]["stop"] is None and body["verdict"]["verdict"] == "not yet"


def test_anonymous_answers_are_kept_out_of_the_comparison_and_shown_apart() -> None:
    anonymous = answers("student", ["anonymous"] * 5, [1, 0, 0, 1, 0], [3] * 5)
    body = report(STUDENT, TEACHER, anonymous)
    assert body["arms"]["student"]["requests"] == 3 and body["arms"]["student"]["impressions"] == 12
    assert body["anonymous"] == {
        "served_by": "student", "requests": 5, "impressions": 15, "clicks": 2, "purchases": 0,
        "ctr": {"rate": pytest.approx(2 / 15), "low": pytest.approx(0.03736, abs=1e-4), "high": pytest.approx(0.3788, abs=1e-3)},
    }  # fmt: skip
    assert body["comparison"]["ctr"]["diff"] == pytest.approx(1 / 6)  # unchanged by the anonymous answers


def test_cuped_uses_the_pre_period_and_the_verdict_reads_the_adjusted_interval() -> None:
    rng = np.random.default_rng(13)
    parts, pre_rows = [], []
    for arm in ("student", "teacher"):
        p = rng.beta(1, 19, 500)
        n, pre_n = rng.integers(10, 100, 500), rng.integers(10, 100, 500)
        units = [f"user:{arm}{i}" for i in range(500)]
        parts.append(answers(arm, units, rng.binomial(n, p).tolist(), n.tolist()))
        pre_rows += [
            (u, 1, int(k), int(c), 0, 0) for u, k, c in zip(units, pre_n, rng.binomial(pre_n, p), strict=True)
        ]
    pre = UnitSums.from_rows(sorted(pre_rows))
    body = report(*parts, pre=pre)
    ctr = body["comparison"]["ctr"]
    assert ctr["cuped"]["applied"] and ctr["cuped"]["users_with_pre_period"] == [500, 500]
    assert ctr["cuped"]["variance_reduction"] > 0.2
    assert body["verdict"]["cuped_applied"] and body["verdict"]["low"] == ctr["low"]
    plain = report(*parts)["comparison"]["ctr"]
    assert ctr["high"] - ctr["low"] < plain["high"] - plain["low"]  # narrower with the pre-period


def test_a_stopped_experiment_says_so_and_a_running_one_says_when() -> None:
    parts = (_users("student", 300, 0.05, 14), _users("teacher", 300, 0.05, 15))
    running = report(*parts, elapsed_s=3600.0, now=10_000.0)
    conclusion = running["verdict"]["expected_conclusion"]
    needed = running["verdict"]["users_needed"]["student"]
    assert conclusion["users_per_hour"] == [300.0, 300.0]
    assert conclusion["hours_left"] == pytest.approx((needed - 300) / 300.0)
    assert conclusion["at"] == pytest.approx(10_000.0 + conclusion["hours_left"] * 3600)
    assert (
        f"about {conclusion['hours_left']:,.1f} more hours at the current traffic"
        in running["verdict"]["summary"]
    )
    stopped = report(*parts, elapsed_s=3600.0, stopped_at=0.0)
    assert stopped["verdict"]["stopped"] and stopped["verdict"]["summary"].startswith(
        "Stopped 1970-01-01T00:00:00+00:00; final reading: not yet"
    )


def test_too_few_users_and_a_closed_arm() -> None:
    body = report(answers("student", ["user:a"], [1], [3]), TEACHER)
    assert body["comparison"]["ctr"]["diff"] == pytest.approx(0.5 - 1 / 3)
    assert body["comparison"]["ctr"]["p_value"] is None
    assert body["verdict"]["verdict"] == "not yet" and "at least 2 users" in body["verdict"]["summary"]
    closed = report(STUDENT, shares={"student": 1.0, "teacher": 0.0})
    assert closed["verdict"]["users_needed"] is None  # no teacher share: no sample size to quote
    assert closed["per_user"]["teacher"]["units"] == 0


def test_users_needed_can_be_asked_for_another_lift_without_retuning_the_test() -> None:
    parts = (_users("student", 300, 0.05, 16), _users("teacher", 300, 0.05, 17))
    planned, smaller = report(*parts), report(*parts, target_lift=0.05)
    assert (
        smaller["verdict"]["target_relative_effect"] == 0.05
        and planned["verdict"]["target_relative_effect"] == 0.15
    )
    assert smaller["verdict"]["users_needed"]["student"] > 4 * planned["verdict"]["users_needed"]["student"]
    assert (
        smaller["comparison"]["ctr"]["low"] == planned["comparison"]["ctr"]["low"]
    )  # same test, same interval
    assert "finding a 5% lift needs about" in smaller["verdict"]["summary"]
    assert "finding the planned 15% lift needs about" in planned["verdict"]["summary"]
