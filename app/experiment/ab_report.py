"""The `/v1/ab/report` body: per-arm counts, the user-level comparison with its verdict, and SRM.

The statistics are `app.experiment.ab_stats`'s (the delta method over per-user sums; its docstring
gives the method and sources). This module only shapes them into the report.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.experiment.ab_stats import (
    ALPHA,
    Z_95,
    Proportion,
    RatioDifference,
    RatioEstimate,
    ratio_difference,
    ratio_estimate,
    srm_check,
    two_proportion_ztest,
    users_needed,
    verdict,
    wilson_interval,
)
from app.stores.records import UNIT_SUM_COLUMNS, UnitSums

# metric -> (numerator column, denominator column) of UnitSums; all are higher-is-better.
METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "conversion": ("purchase_requests", "requests"),  # answers with a purchase / answers
    "purchases_per_impression": ("purchases", "impressions"),
}
PRIMARY_METRIC = "ctr"  # the metric the verdict is read from
TARGET_LIFT = 0.05  # the relative effect "users needed" is quoted for
POWER = 0.8
_COUNT_KEYS = ("users", "requests", "impressions", "clicks", "purchases")


def _interval(p: Proportion) -> dict[str, float | int | None]:
    return {"rate": p.rate, "low": p.low, "high": p.high}


def _estimates(sums: UnitSums) -> dict[str, RatioEstimate]:
    return {
        metric: ratio_estimate(getattr(sums, num), getattr(sums, den))
        for metric, (num, den) in METRICS.items()
    }


def _arm_per_user(sums: UnitSums, estimates: dict[str, RatioEstimate]) -> dict[str, object]:
    metrics = {}
    for metric, e in estimates.items():
        low = high = None
        if e.rate is not None and e.se is not None:
            low, high = max(0.0, e.rate - Z_95 * e.se), min(1.0, e.rate + Z_95 * e.se)
        metrics[metric] = {"rate": e.rate, "se": e.se, "low": low, "high": high}
    totals = {col: int(getattr(sums, col).sum()) for col in UNIT_SUM_COLUMNS}
    return {"units": len(sums), **totals, "metrics": metrics}


def _comparison(d: RatioDifference) -> dict[str, object]:
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


def _pct(x: float) -> str:
    return f"{x:+.2%}"


def _summary(
    word: str,
    metric: str,
    control: str,
    treatment: str,
    d: RatioDifference,
    srm_warning: str | None,
    needed: tuple[int, int] | None,
    units: tuple[int, int],
) -> str:
    if srm_warning is not None:
        return f"not yet: {srm_warning}"
    if d.diff is None or d.z is None:
        return (
            f"not yet: {metric} needs at least 2 users with {METRICS[metric][1]} and some variation in "
            f"each arm (have {units[0]} {control}, {units[1]} {treatment})"
        )
    size = (
        f"{_pct(d.lift)} relative (95% CI {_pct(d.lift_low)} to {_pct(d.lift_high)})"  # type: ignore[arg-type]
        if d.lift is not None
        else f"{d.diff:+.4g} absolute"
    )
    head = f"{treatment} vs {control} on {metric}: {size}, p = {d.p_value:.3g}, {units[0]} + {units[1]} users"
    if word != "not yet":
        return f"{treatment} is {word} than {control} — {head}"
    mde = _pct(d.mde_relative) if d.mde_relative is not None else f"{d.mde:.4g}"
    tail = f"; the smallest change detectable now (80% power) is {mde.lstrip('+')}"
    if needed is not None:
        tail += (
            f"; detecting a {TARGET_LIFT:.0%} change needs about {needed[0]} {control} and "
            f"{needed[1]} {treatment} users"
        )
    return f"not yet — {head}{tail}"


def build_ab_report(
    counts: Mapping[str, Mapping[str, int]],
    shares: Mapping[str, float],
    unit_sums: Mapping[str, UnitSums] | None = None,
    control: str = "student",
    treatment: str = "teacher",
) -> dict[str, object]:
    """The `/v1/ab/report` body from per-arm counts (FeedbackStore.arm_counts), per-unit sums
    (FeedbackStore.unit_sums) and the configured shares.

    `arms` describes all traffic (anonymous answers included) with per-impression Wilson intervals;
    `per_user` and the comparison count the randomised units only (anonymous answers are always the
    student's, never randomised, so they stay out of the test);
    `teacher_vs_student` (treatment - control) is user-level: diff, interval, z and p from the one
    delta-method SE, its relative lift, MDE and verdict per metric, beside the old per-impression
    test under `per_impression` (for comparison only: it ignores that users are the unit).
    """
    unit_sums = unit_sums or {}
    arms: dict[str, dict[str, object]] = {}
    users: list[int] = []
    for arm in shares:
        c = {"users": 0, "requests": 0, "impressions": 0, "clicks": 0, "purchases": 0, "purchase_requests": 0}
        c.update(counts.get(arm, {}))
        clicks = min(c["clicks"], c["impressions"])
        users.append(c["users"])
        arms[arm] = {
            **{key: c[key] for key in _COUNT_KEYS},
            "share": shares[arm],
            "ctr": _interval(wilson_interval(clicks, c["impressions"])),
            "conversion": _interval(wilson_interval(c["purchase_requests"], c["requests"])),
        }
    names = list(shares)
    srm = srm_check(users, [shares[a] for a in names])
    no_units = UnitSums.from_rows([])
    arm_sums = {arm: unit_sums.get(arm, no_units) for arm in shares}
    estimates = {arm: _estimates(arm_sums[arm]) for arm in shares}
    per_user = {arm: _arm_per_user(arm_sums[arm], estimates[arm]) for arm in shares}

    comparison: dict[str, object] = {}
    verdict_body: dict[str, object] | None = None
    if control in arms and treatment in arms:
        s, t = counts.get(control, {}), counts.get(treatment, {})
        diffs = {m: ratio_difference(estimates[control][m], estimates[treatment][m]) for m in METRICS}
        for metric, d in diffs.items():
            comparison[metric] = _comparison(d)
        for metric, num, den in (
            ("ctr", "clicks", "impressions"),
            ("conversion", "purchase_requests", "requests"),
        ):
            old = two_proportion_ztest(
                min(s.get(num, 0), s.get(den, 0)),
                s.get(den, 0),
                min(t.get(num, 0), t.get(den, 0)),
                t.get(den, 0),
            )
            comparison[metric]["per_impression"] = {  # type: ignore[index]
                "diff": old.diff, "low": old.low, "high": old.high, "z": old.z, "p_value": old.p_value,
            }  # fmt: skip
        d = diffs[PRIMARY_METRIC]
        word = verdict(d) if not srm.mismatch else "not yet"
        live = shares[control] + shares[treatment]
        needed = None
        if word == "not yet" and live > 0 and 0 < shares[control] < live:
            needed = users_needed(
                estimates[control][PRIMARY_METRIC],
                estimates[treatment][PRIMARY_METRIC],
                TARGET_LIFT,
                control_share=shares[control] / live,
            )
        units = (estimates[control][PRIMARY_METRIC].units, estimates[treatment][PRIMARY_METRIC].units)
        verdict_body = {
            "metric": PRIMARY_METRIC,
            "control": control,
            "treatment": treatment,
            "verdict": word,
            "summary": _summary(word, PRIMARY_METRIC, control, treatment, d, srm.warning, needed, units),
            "alpha": ALPHA,
            "power": POWER,
            "mde": d.mde,
            "mde_relative": d.mde_relative,
            "target_relative_effect": TARGET_LIFT,
            "users_needed": None if needed is None else {control: needed[0], treatment: needed[1]},
            "more_users_needed": None
            if needed is None
            else {control: max(0, needed[0] - units[0]), treatment: max(0, needed[1] - units[1])},
        }
    return {
        "arms": arms,
        "teacher_vs_student": comparison,
        "per_user": per_user,
        "verdict": verdict_body,
        "srm": {
            "unit": "users",
            "observed": dict(zip(names, srm.observed, strict=True)),
            "expected": dict(zip(names, srm.expected, strict=True)),
            "chi2": srm.chi2,
            "dof": srm.dof,
            "p_value": srm.p_value,
            "mismatch": srm.mismatch,
            "warning": srm.warning,
        },
    }
