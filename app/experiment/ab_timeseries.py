"""The A/B experiment bucketed by time, for the A/B page's "over time" charts: per bucket and arm the
randomised traffic's counts (and cumulatively), the anonymous traffic apart, and at the end of each
bucket the always-valid interval of the primary metric's difference over everything up to then.

The interval over time is the confidence sequence itself (`app.experiment.sequential`): valid at
every point together, so reading the chart at any moment is as sound as reading the report, and its
last point is the report's interval (both come from `ab_report.read_metric`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.experiment.ab_report import PRIMARY_METRIC, read_metric
from app.experiment.ab_stats import verdict
from app.experiment.proportions import wilson_interval
from app.experiment.sequential import PLANNED_LIFT
from app.experiment.timeseries import bucket_starts
from app.stores.records import UNIT_SUM_COLUMNS, AnswerRows, UnitSums


def _rates(c: dict[str, int]) -> dict[str, dict[str, float | None]]:
    """CTR (clicks / impressions) and conversion (answers with a purchase / answers), Wilson 95% per
    impression: descriptive only."""
    out = {}
    for name, num, den in (("ctr", "clicks", "impressions"), ("conversion", "purchase_requests", "requests")):
        p = wilson_interval(min(c[num], c[den]), c[den])
        out[name] = {"rate": p.rate, "low": p.low, "high": p.high}
    return out


class _Arm:
    """One arm's answers and its per-unit running sums, bucket by bucket."""

    def __init__(self, rows: AnswerRows, bucket_seconds: int):
        self.rows = rows
        self.starts = bucket_starts(rows.ts, bucket_seconds)
        self.units, self.index = np.unique(rows.unit, return_inverse=True)
        self.columns = {
            "requests": np.ones(len(rows), np.int64),
            "impressions": rows.impressions,
            "clicks": rows.clicks,
            "purchases": rows.purchases,
            "purchase_requests": (rows.purchases > 0).astype(np.int64),
        }
        self.running = {col: np.zeros(len(self.units), np.int64) for col in UNIT_SUM_COLUMNS}

    def add(self, bucket: int) -> dict[str, int]:
        """Add the bucket's answers to the running sums; the bucket's own counts."""
        sel = self.starts == bucket
        for col, values in self.columns.items():
            self.running[col] += np.bincount(
                self.index[sel], weights=values[sel], minlength=len(self.units)
            ).astype(np.int64)
        counts = {col: int(values[sel].sum()) for col, values in self.columns.items()}
        return {"users": int(len(np.unique(self.index[sel]))), **counts}

    def cumulative(self) -> tuple[dict[str, int], UnitSums]:
        seen = self.running["requests"] > 0
        sums = UnitSums(self.units[seen], *(self.running[col][seen] for col in UNIT_SUM_COLUMNS))
        return {
            "users": int(seen.sum()),
            **{col: int(self.running[col].sum()) for col in UNIT_SUM_COLUMNS},
        }, sums


def ab_timeseries(
    rows: AnswerRows,
    arms: list[str],
    bucket_seconds: int,
    pre: UnitSums | None = None,
    planned_lift: float = PLANNED_LIFT,
) -> dict[str, Any]:
    """Per bucket: per arm the bucket's and the cumulative counts with per-impression rates, the
    anonymous answers (outside the comparison), and `difference`: the always-valid interval of the
    primary metric's treatment - control over everything up to the bucket's end. `arms` is
    [control, treatment]."""
    answered = rows.where(~rows.error)
    randomised = answered.where(answered.unit != "anonymous")
    anonymous_starts = bucket_starts(answered.ts[answered.unit == "anonymous"], bucket_seconds)
    state = {arm: _Arm(randomised.where(randomised.arm == arm), bucket_seconds) for arm in arms}
    every = np.unique(np.concatenate([bucket_starts(answered.ts, bucket_seconds), anonymous_starts]))
    buckets = []
    for b in every.tolist():
        row: dict[str, Any] = {
            "start": b,
            "arms": {},
            "anonymous_requests": int((anonymous_starts == b).sum()),
        }
        sums = {}
        for arm in arms:
            c = state[arm].add(b)
            running, sums[arm] = state[arm].cumulative()
            row["arms"][arm] = {**c, **_rates(c), "cumulative": {**running, **_rates(running)}}
        if len(arms) == 2:
            d = read_metric(sums[arms[0]], sums[arms[1]], PRIMARY_METRIC, pre, planned_lift).difference
            row["difference"] = {
                "diff": d.diff,
                "low": d.low,
                "high": d.high,
                "lift": d.lift,
                "lift_low": d.lift_low,
                "lift_high": d.lift_high,
                "p_value": d.p_value,
                "verdict": verdict(d),
            }
        buckets.append(row)
    return {"bucket_seconds": bucket_seconds, "arms": arms, "metric": PRIMARY_METRIC, "buckets": buckets}
