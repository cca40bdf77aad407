"""The statistics behind `/v1/ab/report`: intervals, the two-proportion z-test and the SRM check.

math only: scipy is not a service dependency, so the two tail functions needed (standard normal and
chi-square with an integer number of degrees of freedom) use their closed forms via math.erfc.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals
SRM_ALPHA = 0.001  # the usual threshold for sample-ratio mismatch: p below it means assignment is broken


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z; erfc keeps precision far in the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ chi-square with `dof` (a positive integer) degrees of freedom.

    Closed forms of the regularized upper incomplete gamma Q(dof/2, x/2):
    even dof:  Q = e^{-x/2} * sum_{i<dof/2} (x/2)^i / i!
    odd dof:   Q = erfc(sqrt(x/2)) + e^{-x/2} * sum_{i=1}^{(dof-1)/2} (x/2)^{i-1/2} / Gamma(i + 1/2)
    """
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"dof must be a positive integer, got {dof}")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if dof % 2 == 0:
        term = total = 1.0
        for i in range(1, dof // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(half) / math.gamma(1.5)  # i = 1: (x/2)^{1/2} / Gamma(3/2)
    for i in range(1, (dof - 1) // 2 + 1):
        total += math.exp(-half) * term
        term *= half / (i + 0.5)
    return min(1.0, total)


@dataclass(frozen=True)
class Proportion:
    """A rate with its Wilson score interval (sane at 0 successes and small n, unlike Wald)."""

    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Proportion:
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return Proportion(successes, trials, None, None, None)
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return Proportion(successes, trials, p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Difference:
    """treatment rate - control rate, its Wald 95% interval, and the pooled two-proportion z-test."""

    diff: float | None
    low: float | None
    high: float | None
    z: float | None
    p_value: float | None


def two_proportion_ztest(
    control_successes: int,
    control_trials: int,
    treatment_successes: int,
    treatment_trials: int,
    z_crit: float = Z_95,
) -> Difference:
    """Two-sided z-test of p_treatment = p_control with the pooled standard error.

    The interval uses the unpooled standard error (it describes the difference, not the null).
    Undefined (all None) when an arm has no trials; z and p are None when the pooled rate is 0 or 1.
    """
    for s, n in ((control_successes, control_trials), (treatment_successes, treatment_trials)):
        if n < 0 or s < 0 or s > n:
            raise ValueError(f"need 0 <= successes <= trials, got {s}/{n}")
    if control_trials == 0 or treatment_trials == 0:
        return Difference(None, None, None, None, None)
    p_c = control_successes / control_trials
    p_t = treatment_successes / treatment_trials
    diff = p_t - p_c
    se = math.sqrt(p_c * (1 - p_c) / control_trials + p_t * (1 - p_t) / treatment_trials)
    low, high = diff - z_crit * se, diff + z_crit * se
    pooled = (control_successes + treatment_successes) / (control_trials + treatment_trials)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_trials + 1 / treatment_trials))
    if se_pooled == 0:
        return Difference(diff, low, high, None, None)
    z = diff / se_pooled
    return Difference(diff, low, high, z, 2 * normal_sf(abs(z)))


@dataclass(frozen=True)
class SampleRatio:
    """Pearson chi-square of the observed arm counts against the configured shares."""

    observed: list[int]
    expected: list[float]
    chi2: float | None
    dof: int
    p_value: float | None
    mismatch: bool
    warning: str | None


def srm_check(observed: Sequence[int], shares: Sequence[float], alpha: float = SRM_ALPHA) -> SampleRatio:
    """Sample-ratio mismatch: is the split of units across arms consistent with the configured shares?

    Arms configured at share 0 take no part in the test, but any unit seen there is a mismatch by
    itself (assignment is broken, not unlucky). With fewer than two live arms nothing is tested.
    """
    if len(observed) != len(shares):
        raise ValueError("observed and shares must have the same length")
    if any(s < 0 for s in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-9):
        raise ValueError(f"shares must be non-negative and sum to 1, got {list(shares)}")
    total = sum(observed)
    expected = [total * s for s in shares]
    stray = [i for i, s in enumerate(shares) if s == 0 and observed[i] > 0]
    if stray:
        return SampleRatio(
            list(observed), expected, None, 0, 0.0, True, f"units seen in arms configured at share 0: {stray}"
        )
    live = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0]
    if len(live) < 2 or total == 0:
        return SampleRatio(list(observed), expected, None, 0, None, False, None)
    chi2 = sum((o - e) ** 2 / e for o, e in live)
    dof = len(live) - 1
    p = chi2_sf(chi2, dof)
    mismatch = p < alpha
    warning = (
        f"sample ratio mismatch: observed {list(observed)} vs expected {[round(e, 1) for e in expected]} "
        f"(chi2={chi2:.2f}, p={p:.2g} < {alpha}); check the assignment before reading the results"
        if mismatch
        else None
    )
    return SampleRatio(list(observed), expected, chi2, dof, p, mismatch, warning)


def _interval(p: Proportion) -> dict[str, float | int | None]:
    return {"rate": p.rate, "low": p.low, "high": p.high}


def build_ab_report(
    counts: Mapping[str, Mapping[str, int]], shares: Mapping[str, float]
) -> dict[str, object]:
    """The `/v1/ab/report` body from per-arm counts (FeedbackStore.arm_counts) and configured shares.

    CTR = clicks / impressions (each shown item is a trial); conversion = answers with a purchase /
    answers. Differences are teacher - student with the student as control.
    """
    arms: dict[str, dict[str, object]] = {}
    users: list[int] = []
    for arm in shares:
        c = {"users": 0, "requests": 0, "impressions": 0, "clicks": 0, "purchases": 0, "purchase_requests": 0}
        c.update(counts.get(arm, {}))
        clicks = min(c["clicks"], c["impressions"])
        users.append(c["users"])
        arms[arm] = {
            **{key: c[key] for key in ("users", "requests", "impressions", "clicks", "purchases")},
            "share": shares[arm],
            "ctr": _interval(wilson_interval(clicks, c["impressions"])),
            "conversion": _interval(wilson_interval(c["purchase_requests"], c["requests"])),
        }
    comparison: dict[str, object] = {}
    if "student" in arms and "teacher" in arms:
        s, t = counts.get("student", {}), counts.get("teacher", {})
        for metric, num, den in (
            ("ctr", "clicks", "impressions"),
            ("conversion", "purchase_requests", "requests"),
        ):
            d = two_proportion_ztest(
                min(s.get(num, 0), s.get(den, 0)),
                s.get(den, 0),
                min(t.get(num, 0), t.get(den, 0)),
                t.get(den, 0),
            )
            comparison[metric] = {
                "diff": d.diff,
                "low": d.low,
                "high": d.high,
                "z": d.z,
                "p_value": d.p_value,
            }
    names = list(shares)
    srm = srm_check(users, [shares[a] for a in names])
    return {
        "arms": arms,
        "teacher_vs_student": comparison,
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
