"""CUPED: less noise in a ratio metric from each user's behaviour before the experiment started.

Deng, Xu, Kohavi & Walker ("Improving the Sensitivity of Online Controlled Experiments by Utilizing
Pre-Experiment Data", WSDM 2013): for a metric Y and a covariate X measured before treatment (so
untouched by it), Ŷ_cv = Ȳ - θ (X̄ - E X) is unbiased for every θ and has the least variance at
θ = Cov(Y, X) / Var(X), Var(Ŷ_cv) = Var(Ȳ) (1 - ρ²). The same θ is used in both arms, so the
difference of the adjusted means stays unbiased (sec. 3.3).

Ratio metrics (CTR = Σ clicks / Σ impressions) are not means of a per-user value, so both sides go
through the delta method (Deng, Knoblich & Lu, KDD 2018, sec. 3.3): R = Σx / Σy is to first order
R + mean(u) with the per-user influence u_i = (x_i - R y_i) / ȳ, whose variance over n is the
delta-method Var(R). The covariate is the same linearisation of the user's pre-period ratio,
w_i = (x'_i - R' y'_i) / ȳ' with R' and ȳ' pooled over every user of both arms that has a pre-period;
a user without one gets w_i = 0, so their adjusted value is their plain one. The pooled mean of w is
exactly 0 (the residuals of R' sum to 0), which is E X for the adjustment. Then, per arm,

    R_cv = R - θ w̄_arm,   Var(R_cv) = var(u - θ w) / n,
    θ = Σ_arms Σ_i u_i (w_i - w̄_arm) / Σ_arms Σ_i (w_i - w̄_arm)²   (pooled within arms).

The adjusted estimates go into the same always-valid difference as the plain ones
(`app.experiment.ab_stats.ratio_difference`); θ is re-estimated at each look, which costs nothing
asymptotically. The variance reduction reported is 1 - Var(D_cv) / Var(D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.experiment.ab_stats import RatioEstimate, ratio_estimate
from app.stores.records import UnitSums

Arm = tuple[np.ndarray, np.ndarray]  # per-user (numerator, denominator), [n] each


@dataclass(frozen=True)
class Cuped:
    """Both arms' adjusted estimates and what the adjustment did."""

    control: RatioEstimate
    treatment: RatioEstimate
    theta: float | None  # None: no covariate with any variation, the estimates are the plain ones
    users_with_pre: tuple[int, int]  # (control, treatment) users with a pre-period
    variance_reduction: float | None  # 1 - Var(D_cv) / Var(D); None without a variance to reduce


def pre_period(units: np.ndarray, pre: UnitSums, numerator: str, denominator: str) -> Arm:
    """The pre-period (numerator, denominator) of each of `units` (0, 0 for a unit without one);
    `pre` is sorted by unit, as the stores return it."""
    x, y = np.zeros(len(units)), np.zeros(len(units))
    if len(pre) and len(units):
        at = np.searchsorted(pre.units, units).clip(max=len(pre) - 1)
        found = pre.units[at] == units
        x[found] = getattr(pre, numerator)[at[found]]
        y[found] = getattr(pre, denominator)[at[found]]
    return x, y


def _influence(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """u_i = (x_i - R y_i) / ȳ: the delta-method linearisation of R = Σx / Σy, [n]."""
    rate = x.sum() / y.sum()
    return (x - rate * y) / y.mean()


def cuped_estimates(control: Arm, treatment: Arm, control_pre: Arm, treatment_pre: Arm) -> Cuped:
    """The CUPED-adjusted ratio estimates of both arms (module docstring); plain estimates when an
    arm has fewer than two users or no denominator, or when no user has a pre-period."""
    plain = ratio_estimate(*control), ratio_estimate(*treatment)
    has = [int((pre[1] > 0).sum()) for pre in (control_pre, treatment_pre)]
    unchanged = Cuped(plain[0], plain[1], None, (has[0], has[1]), None)
    if any(e.se is None for e in plain) or not sum(has):
        return unchanged
    pre_x = np.concatenate([control_pre[0], treatment_pre[0]]).astype(np.float64)
    pre_y = np.concatenate([control_pre[1], treatment_pre[1]]).astype(np.float64)
    with_pre = pre_y > 0
    pre_rate = pre_x[with_pre].sum() / pre_y[with_pre].sum()
    w_all = np.where(with_pre, (pre_x - pre_rate * pre_y) / pre_y[with_pre].mean(), 0.0)
    n_c = len(control[0])
    ws = (w_all[:n_c], w_all[n_c:])
    us = tuple(
        _influence(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in (control, treatment)
    )
    centred = [w - w.mean() for w in ws]
    var_w = sum(float(c @ c) for c in centred)
    if var_w <= 0:
        return unchanged
    theta = sum(float(u @ c) for u, c in zip(us, centred, strict=True)) / var_w
    adjusted = []
    for estimate, u, w in zip(plain, us, ws, strict=True):
        resid = u - theta * w
        unit_variance = float(resid.var(ddof=1))
        adjusted.append(
            RatioEstimate(
                estimate.units,
                estimate.numerator,
                estimate.denominator,
                estimate.rate - theta * float(w.mean()),  # type: ignore[operator]
                math.sqrt(unit_variance / estimate.units),
                unit_variance,
            )
        )
    before = plain[0].se ** 2 + plain[1].se ** 2  # type: ignore[operator]
    after = adjusted[0].se ** 2 + adjusted[1].se ** 2  # type: ignore[operator]
    reduction = 1.0 - after / before if before > 0 else None
    return Cuped(adjusted[0], adjusted[1], theta, (has[0], has[1]), reduction)
