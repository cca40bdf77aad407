"""The shadow comparisons bucketed by time, for the Shadow page's "over time" charts (the A/B
experiment's are `ab_timeseries`).

The report (`shadow_report`) answers "how does it stand now"; this answers "how did it move": the
same agreement metrics per pair of versions per bucket.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.experiment.shadow_report import METRIC_NAMES, pair_info, pair_windows, ratio_label, shadowable
from app.stores.records import METRIC_COLUMNS, AnswerRows, ComparisonRows


def bucket_starts(ts: np.ndarray, bucket_seconds: int) -> np.ndarray:
    """The start (epoch seconds, a multiple of bucket_seconds) of the bucket each time falls in."""
    return (np.floor(ts / bucket_seconds) * bucket_seconds).astype(np.int64)


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def shadow_timeseries(
    rows: ComparisonRows, bucket_seconds: int, answers: AnswerRows | None = None, lead_s: float = 0.0
) -> dict[str, Any]:
    """Per pair (kind, control version, treatment version), per bucket: comparisons, the mean of each
    agreement metric, the median treatment/control latency ratio, and the share of that bucket's
    shadowable answers of the control version compared, counted from the pair's start (`answers`:
    every experiment's, so a bucket keeps its share when the next experiment starts; `lead_s`: see
    shadow_report.pair_windows). Rows with no known time (NaN) are left out."""
    timed = np.isfinite(rows.ts)
    starts = np.where(timed, bucket_starts(np.where(timed, rows.ts, 0.0), bucket_seconds), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            rows.student_latency_ms > 0, rows.teacher_latency_ms / rows.student_latency_ms, np.nan
        )
    windows = pair_windows(rows, lead_s)
    if answers is not None:
        eligible = answers.where(shadowable(answers))
        answer_starts = bucket_starts(eligible.ts, bucket_seconds)
    keys = zip(rows.pair.tolist(), rows.student_version.tolist(), rows.teacher_version.tolist(), strict=True)
    out = []
    for key in sorted(set(keys)):
        kind, student_v, teacher_v = key
        in_pair = (
            timed
            & (rows.pair == kind)
            & (rows.student_version == student_v)
            & (rows.teacher_version == teacher_v)
        )
        low, high = windows.get(key, (np.inf, -np.inf))
        buckets = []
        for b in np.unique(starts[in_pair]).tolist():
            mask = in_pair & (starts == b)
            n = int(mask.sum())
            finite_ratio = ratio[mask][np.isfinite(ratio[mask])]
            served = 0
            if answers is not None:
                served = int(
                    (
                        (answer_starts == b)
                        & (eligible.version == student_v)
                        & (eligible.ts >= low)
                        & (eligible.ts <= high)
                    ).sum()
                )
            buckets.append(
                {
                    "start": b,
                    "count": n,
                    **{METRIC_NAMES[m]: _finite_mean(rows.metrics[m][mask]) for m in METRIC_COLUMNS},
                    "latency_ratio_p50": float(np.median(finite_ratio)) if len(finite_ratio) else None,
                    "served": served,
                    "share_compared": min(1.0, n / served) if served else None,
                }
            )
        pair = pair_info(kind, student_v, teacher_v)
        out.append(
            {
                "pair": pair,
                "latency_ratio": ratio_label(pair),
                "student_version": student_v,
                "teacher_version": teacher_v,
                "buckets": buckets,
            }
        )
    return {"bucket_seconds": bucket_seconds, "pairs": out}
