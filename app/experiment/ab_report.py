"""The `/v1/ab/report` body: per-arm counts of the randomised traffic (anonymous traffic apart), the
user-level comparison per metric with its always-valid interval, CUPED, the guardrails, the verdict
in words and when the experiment can be expected to conclude.

The statistics are `ab_stats` (delta method), `sequential` (the always-valid confidence sequence),
`cuped` and `guardrails`; their docstrings give methods and sources. One rule everywhere: the
verdict, the interval and the p-value of the primary metric come from one always-valid
RatioDifference, so the words cannot contradict the numbers. The fixed-horizon reading (the z-test
for a team that fixed its sample size in advance) is kept apart under `fixed_horizon`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.experiment.ab_stats import (
    RatioDifference,
    fixed_horizon_difference,
    ratio_difference,
    ratio_estimate,
    users_needed,
    verdict,
)
from app.experiment.ab_summary import summary
from app.experiment.cuped import Cuped, cuped_estimates, pre_period
from app.experiment.guardrails import guardrails
from app.experiment.proportions import Z_95, SampleRatio, srm_check, two_proportion_ztest, wilson_interval
from app.experiment.sequential import ALPHA, PLANNED_LIFT
from app.stores.records import UNIT_SUM_COLUMNS, AnswerRows, UnitSums, unit_sums_of

# metric -> (numerator column, denominator column) of UnitSums; all are higher-is-better.
METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "conversion": ("purchase_requests", "requests"),  # answers with a purchase / answers
    "purchases_per_impression": ("purchases", "impressions"),
}
PRIMARY_METRIC = "ctr"  # the metric the verdict is read from
PRIMARY_DEFINITION = (
    "CTR per user: clicks / impressions summed over each arm's randomised users, analysed over users "
    "(delta method); not the per-impression CTR"
)
POWER = 0.8
PRE_PERIOD_DAYS = 14.0  # CUPED's covariate: each user's answers and clicks this long before the start
NO_UNITS = UnitSums.from_rows([])


@dataclass(frozen=True)
class Reading:
    """One metric's comparison as the verdict uses it: the always-valid difference of the CUPED
    estimates where a pre-period exists (else the plain ones), the CUPED bookkeeping, and the plain
    fixed-horizon reading."""

    difference: RatioDifference
    cuped: Cuped
    fixed_horizon: RatioDifference


def read_metric(
    control: UnitSums,
    treatment: UnitSums,
    metric: str,
    pre: UnitSums | None = None,
    planned_lift: float = PLANNED_LIFT,
) -> Reading:
    """The comparison of one metric between two arms' per-unit sums (the report and the interval over
    time both call this, so the chart's last point is the report's interval)."""
    num, den = METRICS[metric]
    arms = [(getattr(s, num), getattr(s, den)) for s in (control, treatment)]
    pres = [pre_period(s.units, pre if pre is not None else NO_UNITS, num, den) for s in (control, treatment)]
    cuped = cuped_estimates(arms[0], arms[1], pres[0], pres[1])
    plain = [ratio_estimate(*arm) for arm in arms]
    return Reading(
        ratio_difference(cuped.control, cuped.treatment, planned_lift=planned_lift),
        cuped,
        fixed_horizon_difference(plain[0], plain[1]),
    )


def _totals(sums: UnitSums) -> dict[str, int]:
    return {"users": len(sums), **{col: int(getattr(sums, col).sum()) for col in UNIT_SUM_COLUMNS}}


def _interval(successes: int, trials: int) -> dict[str, float | None]:
    p = wilson_interval(min(successes, trials), trials)
    return {"rate": p.rate, "low": p.low, "high": p.high}


def _difference(d: RatioDifference) -> dict[str, Any]:
    return {
        "diff": d.diff,
        "low": d.low,
        "high": d.high,
        "z": d.z,
        "p_value": d.p_value,
        "se": d.se,
        "relative": {"lift": d.lift, "se": d.lift_se, "low": d.lift_low, "high": d.lift_high},
        "mde": d.mde,
        "mde_relative": d.mde_relative,
        "verdict": verdict(d),
    }


def _comparison(reading: Reading, c: Mapping[str, int], t: Mapping[str, int], metric: str) -> dict[str, Any]:
    d, cu = reading.difference, reading.cuped
    num, den = METRICS[metric]
    old = two_proportion_ztest(min(c[num], c[den]), c[den], min(t[num], t[den]), t[den])
    return {
        **_difference(d),
        "method": "always_valid",
        "critical_value": d.critical,
        "mixing_scale": d.tau,
        "cuped": {
            "applied": cu.theta is not None,
            "theta": cu.theta,
            "users_with_pre_period": list(cu.users_with_pre),
            "variance_reduction": cu.variance_reduction,
        },
        "fixed_horizon": _difference(reading.fixed_horizon),
        "per_impression": {
            "diff": old.diff,
            "low": old.low,
            "high": old.high,
            "z": old.z,
            "p_value": old.p_value,
        },  # fmt: skip
    }


def expected_conclusion(
    needed: tuple[int, int] | None, have: tuple[int, int], elapsed_s: float | None, now: float
) -> dict[str, Any] | None:
    """When the users needed can be expected in, at the rate new users joined each arm so far."""
    if needed is None or not elapsed_s or elapsed_s <= 0:
        return None
    rates = [n / elapsed_s * 3600.0 for n in have]  # new users per hour, per arm
    if any(r <= 0 for r in rates):
        return None
    hours = max(max(0, need - got) / rate for need, got, rate in zip(needed, have, rates, strict=True))
    return {"users_per_hour": rates, "hours_left": hours, "at": now + hours * 3600.0}


def _anonymous(rows: AnswerRows, control: str) -> dict[str, Any]:
    """Answers with neither user nor session id: served by the control arm, never randomised, so
    outside the comparison; counted here so the page can show them apart."""
    anon = rows.where((rows.unit == "anonymous") & ~rows.error)
    impressions, clicks = int(anon.impressions.sum()), int(anon.clicks.sum())
    return {
        "served_by": control,
        "requests": len(anon),
        "impressions": impressions,
        "clicks": clicks,
        "purchases": int(anon.purchases.sum()),
        "ctr": _interval(clicks, impressions),
    }


def _per_user(arm_sums: UnitSums, totals: dict[str, int]) -> dict[str, Any]:
    """One arm's per-user rates with their delta-method 95% interval (descriptive, per arm)."""
    metrics = {}
    for metric, (num, den) in METRICS.items():
        e = ratio_estimate(getattr(arm_sums, num), getattr(arm_sums, den))
        low = high = None
        if e.rate is not None and e.se is not None:
            low, high = max(0.0, e.rate - Z_95 * e.se), min(1.0, e.rate + Z_95 * e.se)
        metrics[metric] = {"rate": e.rate, "se": e.se, "low": low, "high": high}
    counts = {k: v for k, v in totals.items() if k != "users"}
    return {"units": totals["users"], **counts, "metrics": metrics}


@dataclass(frozen=True)
class Plan:
    """What the experiment was planned for and where it stands: the inputs of the verdict's words."""

    planned_lift: float
    target_lift: float  # the lift users needed are quoted for
    control_share: float  # the control's share of the two arms
    have: tuple[int, int]  # users so far (control, treatment)
    elapsed_s: float | None
    stopped_at: float | None
    now: float


def _verdict(
    primary: Reading,
    word: str,
    control: str,
    treatment: str,
    plan: Plan,
    guards: dict[str, Any],
    srm: SampleRatio,
) -> dict[str, Any]:
    d, cu = primary.difference, primary.cuped
    plannable = 0 < plan.control_share < 1
    needed = (
        users_needed(
            cu.control, cu.treatment, plan.target_lift, plan.control_share, planned_lift=plan.planned_lift
        )
        if plannable
        else None
    )
    conclusion = (
        expected_conclusion(needed, plan.have, plan.elapsed_s, plan.now) if word == "not yet" else None
    )
    have = plan.have
    words = summary(
        word, d, control, treatment, have, needed, conclusion, plan.target_lift,
        plan.target_lift == plan.planned_lift, guards, srm, plan.stopped_at,
    )  # fmt: skip
    return {
        "metric": PRIMARY_METRIC,
        "metric_definition": PRIMARY_DEFINITION,
        "control": control,
        "treatment": treatment,
        "verdict": word,
        "method": "always_valid",
        "summary": words,
        "alpha": ALPHA,
        "power": POWER,
        "planned_lift": plan.planned_lift,
        "cuped_applied": cu.theta is not None,
        "variance_reduction": cu.variance_reduction,
        "low": d.low,
        "high": d.high,
        "p_value": d.p_value,
        "relative": {"lift": d.lift, "low": d.lift_low, "high": d.lift_high},
        "mde": d.mde,
        "mde_relative": d.mde_relative,
        "target_relative_effect": plan.target_lift,
        "users_needed": None if needed is None else {control: needed[0], treatment: needed[1]},
        "more_users_needed": None
        if needed is None
        else {control: max(0, needed[0] - have[0]), treatment: max(0, needed[1] - have[1])},
        "expected_conclusion": conclusion,
        "stopped": plan.stopped_at is not None,
        "stopped_at": plan.stopped_at,
    }


def _fixed_horizon(
    primary: Reading, c_sums: UnitSums, t_sums: UnitSums, control: str, treatment: str, plan: Plan
) -> dict[str, Any]:
    """The primary metric read as a fixed-horizon test, with the sample size that test would need."""
    plain = [ratio_estimate(*(getattr(s, col) for col in METRICS[PRIMARY_METRIC])) for s in (c_sums, t_sums)]
    needed = None
    if 0 < plan.control_share < 1:
        needed = users_needed(
            plain[0], plain[1], plan.target_lift, plan.control_share, method="fixed_horizon"
        )
    return {
        **_difference(primary.fixed_horizon),
        "note": "valid only for a sample size fixed in advance and read once; the verdict does not use it",
        "users_needed": None if needed is None else {control: needed[0], treatment: needed[1]},
    }


def build_ab_report(
    rows: AnswerRows,
    shares: Mapping[str, float],
    control: str = "student",
    treatment: str = "teacher",
    *,
    pre: UnitSums | None = None,
    planned_lift: float = PLANNED_LIFT,
    target_lift: float | None = None,
    elapsed_s: float | None = None,
    stopped_at: float | None = None,
    now: float = 0.0,
) -> dict[str, Any]:
    """The `/v1/ab/report` body from the experiment's answers (FeedbackStore.answer_rows), the
    configured shares and the users' pre-period sums (None: no CUPED).

    `arms` and `per_user` count the randomised units only; `anonymous` the rest. `comparison` is per
    metric treatment - control: the always-valid reading (CUPED where a pre-period exists), its
    `fixed_horizon` reading and the per-impression test (for comparison only). The verdict's users
    needed are quoted for `target_lift` (default: the planned lift); `elapsed_s` (the time the
    experiment has run) dates `expected_conclusion`; `stopped_at` marks a stopped experiment.
    """
    sums = unit_sums_of(rows)
    arm_sums = {arm: sums.get(arm, NO_UNITS) for arm in shares}
    totals = {arm: _totals(arm_sums[arm]) for arm in shares}
    arms = {
        arm: {
            **{k: c[k] for k in ("users", "requests", "impressions", "clicks", "purchases")},
            "share": shares[arm],
            "ctr": _interval(c["clicks"], c["impressions"]),
            "conversion": _interval(c["purchase_requests"], c["requests"]),
        }
        for arm, c in totals.items()
    }
    names = list(shares)
    srm = srm_check([totals[a]["users"] for a in names], [shares[a] for a in names])
    comparison: dict[str, Any] = {}
    verdict_body = fixed_body = guards = None
    if control in shares and treatment in shares:
        c_sums, t_sums = arm_sums[control], arm_sums[treatment]
        readings = {m: read_metric(c_sums, t_sums, m, pre, planned_lift) for m in METRICS}
        comparison = {m: _comparison(r, totals[control], totals[treatment], m) for m, r in readings.items()}
        guards = guardrails(rows, control, treatment, srm)
        word = f"stop: {guards['stop']}" if guards["stop"] else verdict(readings[PRIMARY_METRIC].difference)
        live = shares[control] + shares[treatment]
        plan = Plan(
            planned_lift, planned_lift if target_lift is None else target_lift,
            shares[control] / live if live > 0 else 0.0, (totals[control]["users"], totals[treatment]["users"]),
            elapsed_s, stopped_at, now,
        )  # fmt: skip
        verdict_body = _verdict(readings[PRIMARY_METRIC], word, control, treatment, plan, guards, srm)
        fixed_body = _fixed_horizon(readings[PRIMARY_METRIC], c_sums, t_sums, control, treatment, plan)
    return {
        "arms": arms,
        "anonymous": _anonymous(rows, control),
        "comparison": comparison,
        "per_user": {arm: _per_user(arm_sums[arm], totals[arm]) for arm in shares},
        "verdict": verdict_body,
        "verdict_uses": "always_valid",
        "fixed_horizon": fixed_body,
        "guardrails": guards,
        "srm": {
            "unit": "users",
            "observed": dict(zip(names, srm.observed, strict=True)),
            "expected": dict(zip(names, srm.expected, strict=True)),
            "chi2": srm.chi2,
            "dof": srm.dof,
            "p_value": srm.p_value,
            "always_valid_p": srm.always_valid_p,
            "mismatch": srm.mismatch,
            "warning": srm.warning,
        },
    }


def pre_period_window(started_at: float) -> tuple[float, float]:
    """[start - PRE_PERIOD_DAYS, start): the answers CUPED's covariate is read from."""
    return started_at - PRE_PERIOD_DAYS * 86400.0, started_at
