"""Proportions and counts: the normal and chi-square tails, the Wilson interval, the per-impression
two-proportion test (kept for comparison only) and the sample-ratio-mismatch check.

math only: scipy is not a service dependency, so the two tail functions needed (standard normal and
chi-square with an integer number of degrees of freedom) use their closed forms via math.erfc.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals
Z_POWER_80 = 0.8416212335729143  # its 80% quantile: the power the MDE is quoted at
ALPHA = 0.05  # two-sided; Z_95 is its critical value
SRM_ALPHA = 0.001  # the usual threshold for sample-ratio mismatch: p below it means assignment is broken


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z; erfc keeps precision far in the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def z_for_alpha(alpha: float) -> float:
    """The two-sided critical value of level `alpha` (0.05 -> 1.96): normal_sf inverted by bisection."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    low, high = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if 2.0 * normal_sf(mid) > alpha else (low, mid)
    return 0.5 * (low + high)


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


def srm_always_valid_p(
    observed: Sequence[int], shares: Sequence[float], concentration: float = 1000.0
) -> float:
    """Always-valid p-value that units split across arms as `shares` (every share > 0).

    The Dirichlet-multinomial mixture of Lindon & Malek ("Anytime-valid inference for multinomial count
    data", NeurIPS 2022), the sample-ratio test Optimizely runs: the likelihood of the counts under
    shares q ~ Dirichlet(C · shares) over their likelihood under `shares`,

        Λ = Γ(C) / Γ(C + n) · Π Γ(C p_i + n_i) / Γ(C p_i) / Π p_i^{n_i},

    a martingale of mean 1 under the configured split, so p = min(1, 1/Λ) holds at every look (Ville's
    inequality), however often the dashboard reads it. C = 1000 gives the prior a spread of ±1.6
    points around a 50/50 share: the size of imbalance a broken assignment leaves."""
    if len(observed) != len(shares) or any(p <= 0 for p in shares):
        raise ValueError("need one positive share per observed count")
    n = sum(observed)
    log_lambda = math.lgamma(concentration) - math.lgamma(concentration + n)
    for count, p in zip(observed, shares, strict=True):
        log_lambda += math.lgamma(concentration * p + count) - math.lgamma(concentration * p)
        log_lambda -= count * math.log(p)
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


@dataclass(frozen=True)
class SampleRatio:
    """The observed arm counts against the configured shares: the always-valid test decides
    (`always_valid_p`), Pearson's chi-square (`chi2`, `p_value`) is the fixed-horizon reading."""

    observed: list[int]
    expected: list[float]
    chi2: float | None
    dof: int
    p_value: float | None
    mismatch: bool
    warning: str | None
    always_valid_p: float | None = None


def srm_check(observed: Sequence[int], shares: Sequence[float], alpha: float = SRM_ALPHA) -> SampleRatio:
    """Sample-ratio mismatch: is the split of units across arms consistent with the configured shares?

    A mismatch is the always-valid p below `alpha` (the dashboard reads this at every look). Arms
    configured at share 0 take no part in the test, but any unit seen there is a mismatch by itself
    (assignment is broken, not unlucky). With fewer than two live arms nothing is tested.
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
            list(observed),
            expected,
            None,
            0,
            0.0,
            True,
            f"units seen in arms configured at share 0: {stray}",
            0.0,
        )
    live = [(o, e, s) for o, e, s in zip(observed, expected, shares, strict=True) if e > 0]
    if len(live) < 2 or total == 0:
        return SampleRatio(list(observed), expected, None, 0, None, False, None)
    chi2 = sum((o - e) ** 2 / e for o, e, _ in live)
    dof = len(live) - 1
    p = chi2_sf(chi2, dof)
    live_share = sum(s for _, _, s in live)
    p_seq = srm_always_valid_p([o for o, _, _ in live], [s / live_share for _, _, s in live])
    mismatch = p_seq < alpha
    warning = (
        f"sample ratio mismatch: observed {list(observed)} vs expected {[round(e, 1) for e in expected]} "
        f"(always-valid p={p_seq:.2g} < {alpha}); check the assignment before reading the results"
        if mismatch
        else None
    )
    return SampleRatio(list(observed), expected, chi2, dof, p, mismatch, warning, p_seq)
