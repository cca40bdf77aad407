"""The shadow comparisons and the A/B counts bucketed by time, for the dashboard's "over time" charts.

The reports (`shadow_report`, `ab_report`) answer "how does it stand now"; these answer "how did it
move": the same agreement metrics per (student, teacher) version pair per bucket, and the same per-arm
counts and per-impression Wilson intervals per bucket and cumulatively. The user-level test, the MDE
and the SRM check stay in `/v1/ab/report`: a per-bucket user-level test would only invite peeking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.experiment.ab_stats import wilson_interval
from app.experiment.shadow_report import METRIC_NAMES, pair_info
from app.stores.records import ARM_COUNT_KEYS, METRIC_COLUMNS, ComparisonRows

BucketCounts = Mapping[int, Mapping[str, Mapping[str, int]]]  # FeedbackStore.bucket_counts


def bucket_starts(ts: np.ndarray, bucket_seconds: int) -> np.ndarray:
    """The start (epoch seconds, a multiple of bucket_seconds) of the bucket each time falls in."""
    return (np.floor(ts / bucket_seconds) * bucket_seconds).astype(np.int64)


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def shadow_timeseries(
    rows: ComparisonRows, bucket_seconds: int, answers: Mapping[int, int]
) -> dict[str, Any]:
    """Per pair (kind, control version, treatment version), per bucket: comparisons, the mean of each
    agreement metric, the median treatment/control latency ratio, and the share of the control's
    answers of that bucket that were compared (`answers`: bucket start -> answers served). Rows with
    no known time (NaN) are left out."""
    timed = np.isfinite(rows.ts)
    starts = np.where(timed, bucket_starts(np.where(timed, rows.ts, 0.0), bucket_seconds), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            rows.student_latency_ms > 0, rows.teacher_latency_ms / rows.student_latency_ms, np.nan
        )
    keys = zip(rows.pair.tolist(), rows.student_version.tolist(), rows.teacher_version.tolist(), strict=True)
    out = []
    for kind, student_v, teacher_v in sorted(set(keys)):
        in_pair = (
            timed
            & (rows.pair == kind)
            & (rows.student_version == student_v)
            & (rows.teacher_version == teacher_v)
        )
        buckets = []
        for b in np.unique(starts[in_pair]).tolist():
            mask = in_pair & (starts == b)
            n = int(mask.sum())
            finite_ratio = ratio[mask][np.isfinite(ratio[mask])]
            served = int(answers.get(b, 0))
            buckets.append(
                {
                    "start": b,
                    "count": n,
                    **{METRIC_NAMES[m]: _finite_mean(rows.metrics[m][mask]) for m in METRIC_COLUMNS},
                    "latency_ratio_p50": float(np.median(finite_ratio)) if len(finite_ratio) else None,
                    "served": served,
                    "share_compared": n / served if served else None,
                }
            )
        out.append(
            {
                "pair": pair_info(kind, student_v, teacher_v),
                "student_version": student_v,
                "teacher_version": teacher_v,
                "buckets": buckets,
            }
        )
    return {"bucket_seconds": bucket_seconds, "pairs": out}


def _rates(c: Mapping[str, int]) -> dict[str, dict[str, float | None]]:
    """CTR (clicks / impressions) and conversion (answers with a purchase / answers), Wilson 95%."""
    out = {}
    for name, num, den in (("ctr", "clicks", "impressions"), ("conversion", "purchase_requests", "requests")):
        p = wilson_interval(min(c[num], c[den]), c[den])
        out[name] = {"rate": p.rate, "low": p.low, "high": p.high}
    return out


def ab_timeseries(counts: BucketCounts, arms: list[str], bucket_seconds: int) -> dict[str, Any]:
    """Per bucket, per arm: the counts of that bucket with their rates, and the cumulative counts
    (every bucket up to and including this one; users are not summed, a user returns) with theirs."""
    running = {arm: dict.fromkeys(ARM_COUNT_KEYS[1:], 0) for arm in arms}
    buckets = []
    for b in sorted(counts):
        row: dict[str, Any] = {"start": b, "arms": {}}
        for arm in arms:
            c = {**dict.fromkeys(ARM_COUNT_KEYS, 0), **counts[b].get(arm, {})}
            for key in running[arm]:
                running[arm][key] += c[key]
            row["arms"][arm] = {
                **c,
                **_rates(c),
                "cumulative": {**running[arm], **_rates(running[arm])},
            }
        buckets.append(row)
    return {"bucket_seconds": bucket_seconds, "arms": arms, "buckets": buckets}
