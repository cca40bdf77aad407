"""The statistics behind `/v1/ab/report`: user-level ratio metrics, their difference and test, the
verdict with its minimum detectable effect, and the SRM check.

Users (or sessions) are what the experiment randomises, so they are the independent units: a user's
impressions share one propensity to click and are not independent trials. Every ratio metric
(CTR = clicks / impressions, conversion = requests with a purchase / requests, purchases /
impressions) is therefore analysed with the delta method over per-user sums (Deng, Knoblich & Lu,
"Applying the Delta Method in Metric Analytics: A Practical Guide with Novel Ideas", KDD 2018, sec. 3;
Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments", 2020, ch. 18). For one arm with n
users, per-user numerator x_i and denominator y_i, the metric is R = sum x / sum y = x̄ / ȳ and

    Var(R) ≈ (s_xx - 2 R s_xy + R² s_yy) / (n ȳ²)

with s_xx, s_yy, s_xy the sample variances and covariance over users (ddof = 1). Arms are independent,
so the difference D = R_t - R_c has SE = sqrt(Var R_t + Var R_c); the two-sided z-test (z = D / SE)
and the 95% interval D ± z_{0.975} SE use that one SE, so p < 0.05 exactly when 0 lies outside the
interval. The relative lift L = R_t / R_c - 1 takes the delta method on the ratio of the two
(independent) ratios, Var(L) ≈ Var R_t / R_c² + R_t² Var R_c / R_c⁴ (Deng et al. sec. 3.3, "percent
change"); it is a description of size, and the verdict is read from the absolute difference. The
minimum detectable effect at the current sample size is MDE = (z_{1-α/2} + z_{power}) SE (α = 0.05
two-sided, power 0.8; Kohavi et al. ch. 17): a true difference of that size is found 80% of the time.

The per-impression two-proportion z-test is kept for comparison only: it treats every impression as
an independent trial, so on real traffic its intervals are too narrow and null experiments "win" more
than α of the time (bench/ab_calibration.py measures both).

math and numpy only: scipy is not a service dependency, so the two tail functions needed (standard
normal and chi-square with an integer number of degrees of freedom) use their closed forms via
math.erfc.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals
Z_POWER_80 = 0.8416212335729143  # its 80% quantile: the power the MDE is quoted at
ALPHA = 0.05  # two-sided; Z_95 is its critical value
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


# -- user-level ratio metrics (the delta method) -----------------------------------------------------


@dataclass(frozen=True)
class RatioEstimate:
    """One arm's ratio metric over its users: R = sum x / sum y with the delta-method standard error.

    `unit_variance` is n * Var(R), the per-user variance that does not shrink with n: it turns a target
    effect into a sample size. `rate` is None without a denominator; `se` is None with fewer than two
    users (no variance to estimate)."""

    units: int
    numerator: float
    denominator: float
    rate: float | None
    se: float | None
    unit_variance: float | None


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> RatioEstimate:
    """R = sum x / sum y over users and its delta-method SE (see the module docstring).

    numerator, denominator: [n_users] per-user sums, e.g. clicks and impressions. With the residuals
    r_i = x_i - R y_i (whose mean is exactly 0), s_xx - 2 R s_xy + R² s_yy = sum r² / (n - 1), which is
    how it is computed: one pass, no cancellation between large terms.
    """
    x = np.asarray(numerator, dtype=np.float64)
    y = np.asarray(denominator, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"need two 1-d arrays of one length, got shapes {x.shape} and {y.shape}")
    if x.size and (min(x.min(), y.min()) < 0 or not (np.isfinite(x).all() and np.isfinite(y).all())):
        raise ValueError("per-user sums must be finite and non-negative")
    n, sx, sy = int(x.size), float(x.sum()), float(y.sum())
    if n == 0 or sy == 0:
        return RatioEstimate(n, sx, sy, None, None, None)
    rate = sx / sy
    if n < 2:
        return RatioEstimate(n, sx, sy, rate, None, None)
    resid = x - rate * y  # (n,)
    y_mean = sy / n
    unit_variance = float(resid @ resid) / (n - 1) / (y_mean * y_mean)
    return RatioEstimate(n, sx, sy, rate, math.sqrt(unit_variance / n), unit_variance)


@dataclass(frozen=True)
class RatioDifference:
    """treatment - control of a ratio metric: one SE for the interval, the z-test and the MDE.

    Everything is None when either arm has no rate, all but diff and lift when either has no SE
    (fewer than two users); z and p_value are None when the SE is 0 (no
    variation between users: nothing to test). `lift` is treatment / control - 1 with its own
    delta-method SE (None when the control rate is 0); `mde_relative` is the MDE over the control rate.
    """

    diff: float | None
    se: float | None
    low: float | None
    high: float | None
    z: float | None
    p_value: float | None
    lift: float | None
    lift_se: float | None
    lift_low: float | None
    lift_high: float | None
    mde: float | None
    mde_relative: float | None


_NO_DIFFERENCE = RatioDifference(*([None] * 12))


def ratio_difference(
    control: RatioEstimate, treatment: RatioEstimate, z_crit: float = Z_95, z_power: float = Z_POWER_80
) -> RatioDifference:
    """D = R_t - R_c, SE = sqrt(SE_t² + SE_c²), D ± z_crit SE, z = D / SE, MDE = (z_crit + z_power) SE;
    the lift's Var ≈ SE_t² / R_c² + R_t² SE_c² / R_c⁴ (independent arms)."""
    if control.rate is None or treatment.rate is None:
        return _NO_DIFFERENCE
    r_c, r_t = control.rate, treatment.rate
    diff = r_t - r_c
    if control.se is None or treatment.se is None:  # a point estimate, nothing to test yet
        lift_only = r_t / r_c - 1 if r_c > 0 else None
        return RatioDifference(diff, None, None, None, None, None, lift_only, None, None, None, None, None)
    se = math.sqrt(control.se**2 + treatment.se**2)
    low, high = diff - z_crit * se, diff + z_crit * se
    z = diff / se if se > 0 else None
    p = 2 * normal_sf(abs(z)) if z is not None else None
    mde = (z_crit + z_power) * se
    lift = lift_se = lift_low = lift_high = mde_rel = None
    if r_c > 0:
        lift = r_t / r_c - 1
        lift_se = math.sqrt(treatment.se**2 / r_c**2 + r_t**2 * control.se**2 / r_c**4)
        lift_low, lift_high = lift - z_crit * lift_se, lift + z_crit * lift_se
        mde_rel = mde / r_c
    return RatioDifference(diff, se, low, high, z, p, lift, lift_se, lift_low, lift_high, mde, mde_rel)


Verdict = Literal["better", "worse", "not yet"]


def verdict(d: RatioDifference) -> Verdict:
    """ "better" / "worse" when the 95% interval of the difference excludes 0 (the same event as
    p < 0.05), else "not yet". Every metric here is higher-is-better."""
    if d.low is None or d.high is None or d.z is None:
        return "not yet"
    if d.low > 0:
        return "better"
    if d.high < 0:
        return "worse"
    return "not yet"


def power(effect: float, se: float, z_crit: float = Z_95) -> float:
    """P(two-sided z-test rejects) when the true difference is `effect` and its SE is `se`:
    Φ(|effect|/se - z_crit) + Φ(-|effect|/se - z_crit). At effect = MDE it is 0.8 (plus the far tail)."""
    if se <= 0:
        raise ValueError(f"se must be positive, got {se}")
    shift = abs(effect) / se
    return normal_sf(z_crit - shift) + normal_sf(z_crit + shift)


def users_needed(
    control: RatioEstimate,
    treatment: RatioEstimate,
    relative_effect: float,
    control_share: float = 0.5,
    z_crit: float = Z_95,
    z_power: float = Z_POWER_80,
) -> tuple[int, int] | None:
    """Users (control, treatment) for the MDE to reach `relative_effect` × the control rate, split as
    now (control_share of the two arms) and with today's per-user variances:
    N = ((z_crit + z_power) / (effect · R_c))² · (σ_c² / w_c + σ_t² / w_t), n_arm = ⌈N · w_arm⌉.
    None when the variances or a positive control rate are not known yet."""
    if not 0 < control_share < 1 or relative_effect <= 0:
        raise ValueError(
            f"need 0 < control_share < 1 and relative_effect > 0, got {control_share}, {relative_effect}"
        )
    if control.unit_variance is None or treatment.unit_variance is None or not control.rate:
        return None
    effect = relative_effect * control.rate
    w_c, w_t = control_share, 1.0 - control_share
    total = ((z_crit + z_power) / effect) ** 2 * (control.unit_variance / w_c + treatment.unit_variance / w_t)
    return math.ceil(total * w_c), math.ceil(total * w_t)
