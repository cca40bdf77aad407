"""Guardrails of an A/B experiment: per arm the error rate, the latency p99 and the share of popular
fallbacks, each tested with the same always-valid rule as the primary metric, and the sample-ratio
check. A guardrail significantly worse in the treatment stops the experiment, whatever the primary
metric says.

Each guardrail is a user-level ratio of bad answers (the delta method over users, as for CTR, since
one user's answers are not independent):
- error rate: failed answers / answers attempted;
- popular-fallback share: answers that fell back to the popular items / answers;
- latency p99: answers slower than the p99 of both arms together / answers with a latency. A
  quantile has no delta-method variance of its own, but "the treatment's p99 is higher" is the same
  event as "more than 1% of the treatment's answers are above the pooled p99", which is a ratio.
The treatment is worse when the always-valid interval of treatment - control lies above 0. Three
guardrails are read at every look, so each holds α / 3 (Bonferroni): the chance that an A/A
experiment is ever stopped by one stays below α. Their mixing scale τ is a 50% rise of the bad rate
(1% of answers over the p99 becoming 1.5%): guardrails are there to catch harm worth stopping for,
not to measure small changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.experiment.ab_stats import RatioDifference, ratio_difference, ratio_estimate
from app.experiment.proportions import SampleRatio, z_for_alpha
from app.experiment.sequential import ALPHA
from app.stores.records import AnswerRows

GUARDRAIL_LABELS = {
    "error_rate": "error rate",
    "latency_p99": "latency p99",
    "fallback_share": "popular-fallback share",
}
SRM_LABEL = "sample ratio mismatch"
PLANNED_INCREASE = 0.5  # the relative rise of a bad rate each guardrail's test is tuned for
LATENCY_QUANTILE = 99.0


def _per_unit(rows: AnswerRows, bad: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per randomised unit of `rows`: (bad answers, answers counted), [units] each."""
    _, index = np.unique(rows.unit, return_inverse=True)
    n = int(index.max()) + 1 if len(index) else 0
    return (
        np.bincount(index, weights=(bad & counted).astype(np.float64), minlength=n),
        np.bincount(index, weights=counted.astype(np.float64), minlength=n),
    )


def _arm_summary(rows: AnswerRows) -> dict[str, Any]:
    answered = ~rows.error
    latency = rows.latency_ms[answered & np.isfinite(rows.latency_ms)]
    n, ok = len(rows), int(answered.sum())
    return {
        "attempts": n,
        "errors": int(rows.error.sum()),
        "error_rate": float(rows.error.mean()) if n else None,
        "fallbacks": int((rows.fallback & answered).sum()),
        "fallback_share": float((rows.fallback & answered).sum() / ok) if ok else None,
        "latency_answers": len(latency),
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_p99_ms": float(np.percentile(latency, LATENCY_QUANTILE)) if len(latency) else None,
    }


def _test(control: AnswerRows, treatment: AnswerRows, name: str, threshold: float | None) -> RatioDifference:
    """The always-valid difference (treatment - control) of one guardrail's bad-answer rate over users."""
    estimates = []
    for rows in (control, treatment):
        answered = ~rows.error
        if name == "error_rate":
            bad, counted = rows.error, np.ones(len(rows), bool)
        elif name == "fallback_share":
            bad, counted = rows.fallback, answered
        else:
            counted = answered & np.isfinite(rows.latency_ms)
            bad = counted & (rows.latency_ms > (np.inf if threshold is None else threshold))
        estimates.append(ratio_estimate(*_per_unit(rows, bad, counted)))
    z = z_for_alpha(ALPHA / len(GUARDRAIL_LABELS))
    return ratio_difference(estimates[0], estimates[1], z, planned_lift=PLANNED_INCREASE)


def guardrails(rows: AnswerRows, control: str, treatment: str, srm: SampleRatio) -> dict[str, Any]:
    """Per arm the guardrail figures, per guardrail its always-valid test, and `stop`: the label of
    the first guardrail the treatment is significantly worse on (the SRM first), else None. `rows`
    are the experiment's answers; anonymous ones (never randomised) are left out here."""
    randomised = rows.where(rows.unit != "anonymous")
    by_arm = {arm: randomised.where(randomised.arm == arm) for arm in (control, treatment)}
    latency = randomised.latency_ms[~randomised.error & np.isfinite(randomised.latency_ms)]
    threshold = float(np.percentile(latency, LATENCY_QUANTILE)) if len(latency) else None
    tests: dict[str, Any] = {}
    stop = SRM_LABEL if srm.mismatch else None
    for name, label in GUARDRAIL_LABELS.items():
        d = _test(by_arm[control], by_arm[treatment], name, threshold)
        worse = d.low is not None and d.low > 0
        tests[name] = {
            "label": label,
            "diff": d.diff,
            "low": d.low,
            "high": d.high,
            "p_value": d.p_value,
            "alpha": ALPHA / len(GUARDRAIL_LABELS),
            "status": "no data" if d.diff is None else "worse" if worse else "ok",
        }
        if worse and stop is None:
            stop = label
    tests["latency_p99"]["pooled_p99_ms"] = threshold
    return {
        "arms": {arm: _arm_summary(by_arm[arm]) for arm in (control, treatment)},
        "tests": tests,
        "srm": {
            "label": SRM_LABEL,
            "status": "worse" if srm.mismatch else "ok",
            "p_value": srm.always_valid_p,
        },
        "stop": stop,
    }
