"""The statistics behind `/v1/ab/report`: user-level ratio metrics, their difference with an
always-valid interval, test and verdict, the minimum detectable effect and the users needed.

Users (or sessions) are what the experiment randomises, so they are the independent units: a user's
impressions share one propensity to click and are not independent trials. Every ratio metric
(CTR = clicks / impressions, conversion = requests with a purchase / requests, purchases /
impressions) is therefore analysed with the delta method over per-user sums (Deng, Knoblich & Lu,
"Applying the Delta Method in Metric Analytics: A Practical Guide with Novel Ideas", KDD 2018, sec. 3;
Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments", 2020, ch. 18). For one arm with n
users, per-user numerator x_i and denominator y_i, the metric is R = sum x / sum y = x̄ / ȳ and

    Var(R) ≈ (s_xx - 2 R s_xy + R² s_yy) / (n ȳ²)

with s_xx, s_yy, s_xy the sample variances and covariance over users (ddof = 1). Arms are independent,
so the difference D = R_t - R_c has SE = sqrt(Var R_t + Var R_c).

`ratio_difference` reads D and SE as a confidence sequence (`app.experiment.sequential`: the
normal-mixture mSPRT, valid at any number of looks): interval D ± c SE, always-valid p-value and
verdict from the one critical value c, so p < α exactly when 0 lies outside the interval. The
relative lift L = R_t / R_c - 1 = D / R_c is reported with the same interval divided by R_c, so the
relative and absolute intervals always exclude 0 together (the sentence on the page cannot
contradict itself). `fixed_horizon_difference` is the classic z-test with c = z_{0.975}: right only
for a team that fixed its sample size in advance and reads the result once.

MDE: (c + z_power) SE, with c the always-valid critical value at the current sample (sequential) or
z_{0.975} (fixed horizon; Kohavi et al. ch. 17). `users_needed` solves the same for the sample size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.experiment.proportions import Z_95, Z_POWER_80, normal_sf
from app.experiment.sequential import (
    PLANNED_LIFT,
    alpha_of,
    mixture_critical_value,
    mixture_p_value,
    required_signal,
)

Method = Literal["always_valid", "fixed_horizon"]


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
    """treatment - control of a ratio metric: one SE and one critical value for the interval, the
    p-value, the verdict and the MDE.

    Everything is None when either arm has no rate, all but diff and lift when either has no SE
    (fewer than two users); z and p_value are None when the SE is 0 (no variation between users:
    nothing to test). `lift` is treatment / control - 1 = diff / R_c with the interval [low, high] /
    R_c (None when the control rate is 0); `mde_relative` is the MDE over the control rate.
    `critical` is the c of diff ± c se: the always-valid c(τ²/se²) or z_{0.975}; `tau` the mixing
    scale (always-valid only)."""

    diff: float | None = None
    se: float | None = None
    low: float | None = None
    high: float | None = None
    z: float | None = None
    p_value: float | None = None
    lift: float | None = None
    lift_se: float | None = None
    lift_low: float | None = None
    lift_high: float | None = None
    mde: float | None = None
    mde_relative: float | None = None
    method: Method = "always_valid"
    critical: float | None = None
    tau: float | None = None


def pooled_rate(control: RatioEstimate, treatment: RatioEstimate) -> float:
    """Both arms' numerators over both denominators: the common rate under the null."""
    total = control.denominator + treatment.denominator
    return (control.numerator + treatment.numerator) / total if total > 0 else 0.0


def _difference(
    control: RatioEstimate,
    treatment: RatioEstimate,
    method: Method,
    z_crit: float,
    z_power: float,
    planned_lift: float,
) -> RatioDifference:
    if control.rate is None or treatment.rate is None:
        return RatioDifference(method=method)
    r_c, r_t = control.rate, treatment.rate
    diff = r_t - r_c
    if control.se is None or treatment.se is None:  # a point estimate, nothing to test yet
        return RatioDifference(diff=diff, lift=diff / r_c if r_c > 0 else None, method=method)
    se = math.sqrt(control.se**2 + treatment.se**2)
    tau = None
    if method == "fixed_horizon":
        critical = z_crit
    else:
        tau = planned_lift * pooled_rate(control, treatment)
        critical = mixture_critical_value(tau**2 / se**2, alpha_of(z_crit)) if se > 0 else math.inf
    z = p = None
    if se > 0:
        z = diff / se
        p = 2 * normal_sf(abs(z)) if method == "fixed_horizon" else mixture_p_value(z, tau**2 / se**2)  # type: ignore[operator]
    if not math.isfinite(critical):  # no mixing mass (a zero pooled rate) or no variance: no interval
        return RatioDifference(
            diff=diff, se=se, z=z, p_value=p, lift=diff / r_c if r_c > 0 else None, method=method, tau=tau
        )
    low, high = diff - critical * se, diff + critical * se
    mde = (critical + z_power) * se
    lift = lift_se = lift_low = lift_high = mde_rel = None
    if r_c > 0:
        lift, lift_se, lift_low, lift_high, mde_rel = diff / r_c, se / r_c, low / r_c, high / r_c, mde / r_c
    return RatioDifference(
        diff, se, low, high, z, p, lift, lift_se, lift_low, lift_high, mde, mde_rel, method, critical, tau
    )


def ratio_difference(
    control: RatioEstimate,
    treatment: RatioEstimate,
    z_crit: float = Z_95,
    z_power: float = Z_POWER_80,
    *,
    planned_lift: float = PLANNED_LIFT,
) -> RatioDifference:
    """D = R_t - R_c with its always-valid interval D ± c SE (level: the two-sided level of z_crit,
    5% for 1.96), the always-valid p-value and MDE = (c + z_power) SE; τ = planned_lift × the pooled
    rate (see `app.experiment.sequential`)."""
    if planned_lift <= 0:
        raise ValueError(f"planned_lift must be positive, got {planned_lift}")
    return _difference(control, treatment, "always_valid", z_crit, z_power, planned_lift)


def fixed_horizon_difference(
    control: RatioEstimate, treatment: RatioEstimate, z_crit: float = Z_95, z_power: float = Z_POWER_80
) -> RatioDifference:
    """The same difference read once at a sample size fixed in advance: D ± z_crit SE, the two-sided
    z-test and MDE = (z_crit + z_power) SE. Wrong when read at every look (bench/ab_calibration.py)."""
    return _difference(control, treatment, "fixed_horizon", z_crit, z_power, PLANNED_LIFT)


Verdict = Literal["better", "worse", "not yet"]


def verdict(d: RatioDifference) -> Verdict:
    """ "better" / "worse" when the interval of the difference excludes 0 (the same event as
    p < α), else "not yet". Every metric here is higher-is-better."""
    if d.low is None or d.high is None or d.z is None:
        return "not yet"
    if d.low > 0:
        return "better"
    if d.high < 0:
        return "worse"
    return "not yet"


def power(effect: float, se: float, z_crit: float = Z_95) -> float:
    """P(two-sided fixed-horizon z-test rejects) when the true difference is `effect` and its SE is
    `se`: Φ(|effect|/se - z_crit) + Φ(-|effect|/se - z_crit). At effect = MDE it is 0.8 (plus the far tail)."""
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
    *,
    planned_lift: float = PLANNED_LIFT,
    method: Method = "always_valid",
) -> tuple[int, int] | None:
    """Users (control, treatment) to find an effect δ = relative_effect × the control rate with power
    z_power, split as now (control_share of the two arms) and with today's per-user variances:
    N = (s / δ)² (σ_c² / w_c + σ_t² / w_t), n_arm = ⌈N · w_arm⌉, where s = δ / SE is the signal the
    test needs: s = required_signal(τ / δ) for the always-valid test (by the time they are in; earlier
    looks only add to it; `app.experiment.sequential`), z_crit + z_power for the fixed horizon.
    None when the variances or a positive control rate are not known yet."""
    if not 0 < control_share < 1 or relative_effect <= 0:
        raise ValueError(
            f"need 0 < control_share < 1 and relative_effect > 0, got {control_share}, {relative_effect}"
        )
    if control.unit_variance is None or treatment.unit_variance is None or not control.rate:
        return None
    effect = relative_effect * control.rate
    if method == "fixed_horizon":
        s = z_crit + z_power
    else:
        tau = planned_lift * pooled_rate(control, treatment)
        if tau <= 0:
            return None
        s = required_signal(tau / effect, z_power, alpha_of(z_crit))
    w_c, w_t = control_share, 1.0 - control_share
    total = (s / effect) ** 2 * (control.unit_variance / w_c + treatment.unit_variance / w_t)
    return math.ceil(total * w_c), math.ceil(total * w_t)
