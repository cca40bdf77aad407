"""User-level A/B statistics against values computed offline (by hand and with mpmath), hard-coded
here: the delta-method ratio, its always-valid and fixed-horizon differences, the verdict, power and
users needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiment.ab_stats import (
    RatioDifference,
    fixed_horizon_difference,
    power,
    ratio_difference,
    ratio_estimate,
    users_needed,
    verdict,
)
from app.experiment.proportions import Z_95, Z_POWER_80, two_proportion_ztest

# -- user-level ratio metrics: the delta method ------------------------------------------------------
# Control users (clicks, impressions): (1, 4), (0, 2), (3, 6): R_c = 4 / 12 = 1/3. Residuals
# x - R y = -1/3, -2/3, 1 (sum 0); sum r² = 1/9 + 4/9 + 1 = 14/9, / (n - 1) = 7/9; the same as
# s_xx - 2 R s_xy + R² s_yy = 7/3 - 2 * 3 / 3 + 4 / 9. ȳ = 4, so n Var = (7/9) / 16 = 7/144 and
# Var(R_c) = 7/432, SE = 0.1272937693.
# Treatment users: (2, 4), (2, 2), (2, 6): R_t = 6 / 12 = 1/2. Residuals 0, 1, -1: sum r² / 2 = 1;
# n Var = 1/16, Var(R_t) = 1/48, SE = 0.1443375673.
# Difference 1/6 with Var = 7/432 + 9/432 = 1/27, SE = 0.1924500897; z = sqrt(27) / 6 = sqrt(3) / 2.
CONTROL = (np.array([1, 0, 3]), np.array([4, 2, 6]))
TREATMENT = (np.array([2, 2, 2]), np.array([4, 2, 6]))


def test_ratio_estimate_by_hand() -> None:
    c, t = ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT)
    assert (c.units, c.numerator, c.denominator, c.rate) == (3, 4.0, 12.0, pytest.approx(1 / 3))
    assert c.unit_variance == pytest.approx(7 / 144, rel=1e-12)
    assert c.se == pytest.approx(math.sqrt(7 / 432), rel=1e-12)
    assert t.rate == 0.5 and t.se == pytest.approx(math.sqrt(1 / 48), rel=1e-12)


def test_ratio_estimate_edges_and_bad_input() -> None:
    empty = ratio_estimate(np.zeros(0), np.zeros(0))
    assert (empty.units, empty.rate, empty.se) == (0, None, None)
    one = ratio_estimate(np.array([1]), np.array([3]))  # a rate, but no variance from one user
    assert (one.rate, one.se) == (pytest.approx(1 / 3), None)
    assert ratio_estimate(np.array([0, 0]), np.array([0, 0])).rate is None  # no impressions at all
    # Every user at the same rate: the user-level variance is exactly 0.
    assert ratio_estimate(np.array([1, 2]), np.array([2, 4])).se == 0.0
    with pytest.raises(ValueError, match="one length"):
        ratio_estimate(np.array([1, 2]), np.array([3]))
    with pytest.raises(ValueError, match="non-negative"):
        ratio_estimate(np.array([-1, 2]), np.array([3, 3]))


def test_ratio_difference_by_hand() -> None:
    """Always valid: pooled rate 10/24, τ = 0.15 × 10/24 = 0.0625, x = τ² / SE² = 0.10546875,
    c(x) = sqrt((1 + 1/x)(2 ln 20 + ln(1 + x))) = 7.99064434910968 (mpmath); so few users give a wide
    interval, and log Λ = z² x / (2 (1 + x)) - ln(1 + x) / 2 < 0 gives p = 1."""
    d = ratio_difference(ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT))
    assert d.method == "always_valid"
    assert d.diff == pytest.approx(1 / 6)
    assert d.se == pytest.approx(1 / math.sqrt(27), rel=1e-12)
    assert d.z == pytest.approx(math.sqrt(3) / 2, rel=1e-12)
    assert d.tau == pytest.approx(0.0625, rel=1e-12)
    assert d.critical == pytest.approx(7.99064434910968117, rel=1e-12)
    assert (d.low, d.high) == (
        pytest.approx(-1.37113355531901212, rel=1e-12),
        pytest.approx(1.70446688865234546, rel=1e-12),
    )
    assert d.p_value == 1.0
    # The relative interval is the same interval over R_c = 1/3: it excludes 0 exactly when it does.
    assert d.lift == pytest.approx(0.5)
    assert (d.lift_low, d.lift_high) == (pytest.approx(3 * d.low), pytest.approx(3 * d.high))
    assert d.mde == pytest.approx((7.99064434910968117 + Z_POWER_80) / math.sqrt(27), rel=1e-12)
    assert verdict(d) == "not yet"


def test_fixed_horizon_difference_by_hand() -> None:
    """The classic z-test on the same tables: D ± 1.96 SE, p = 2 Φ(-|z|)."""
    d = fixed_horizon_difference(ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT))
    assert d.method == "fixed_horizon" and d.critical == Z_95 and d.tau is None
    assert d.p_value == pytest.approx(0.3864762307712327, rel=1e-9)  # 2 * scipy.stats.norm.sf(sqrt(3)/2)
    assert (d.low, d.high) == (
        pytest.approx(1 / 6 - Z_95 / math.sqrt(27), rel=1e-12),
        pytest.approx(1 / 6 + Z_95 / math.sqrt(27), rel=1e-12),
    )
    assert d.lift_low == pytest.approx(3 * (1 / 6 - Z_95 / math.sqrt(27)), rel=1e-12)
    assert d.mde == pytest.approx((Z_95 + Z_POWER_80) / math.sqrt(27), rel=1e-12)
    assert d.mde_relative == pytest.approx(3 * (Z_95 + Z_POWER_80) / math.sqrt(27), rel=1e-12)


def test_ratio_difference_without_variance_gives_the_point_estimate_only() -> None:
    one = ratio_difference(ratio_estimate(np.array([1]), np.array([4])), ratio_estimate(*TREATMENT))
    assert one.diff == pytest.approx(0.25) and one.lift == pytest.approx(1.0)
    assert (one.se, one.low, one.z, one.p_value, one.mde) == (None, None, None, None, None)
    flat = ratio_estimate(np.array([1, 2]), np.array([2, 4]))
    same = ratio_difference(flat, flat)  # SE 0: nothing to test
    assert (same.diff, same.se, same.z, same.p_value, same.low) == (0.0, 0.0, None, None, None)
    assert verdict(same) == "not yet"
    none = ratio_difference(ratio_estimate(np.zeros(0), np.zeros(0)), flat)
    assert none.diff is None and verdict(none) == "not yet"
    with pytest.raises(ValueError, match="planned_lift"):
        ratio_difference(flat, flat, planned_lift=0.0)


@pytest.mark.parametrize("method", [ratio_difference, fixed_horizon_difference])
def test_interval_p_value_and_verdict_are_one_rule_on_many_random_tables(method: object) -> None:
    """p < 0.05 exactly when 0 lies outside the interval, the relative interval excludes 0 with it,
    and the verdict says which side."""
    rng = np.random.default_rng(7)
    seen = {"better": 0, "worse": 0, "not yet": 0}
    for _ in range(600):
        arms = []
        for _ in range(2):
            n = int(rng.integers(2, 400))
            y = rng.integers(1, 30, n)
            x = rng.binomial(y, rng.uniform(0.02, 0.4))
            arms.append(ratio_estimate(x, y))
        d = method(*arms)  # type: ignore[operator]
        if d.p_value is None or d.low is None:
            continue
        outside = d.low > 0 or d.high < 0
        assert (d.p_value < 0.05) == outside
        assert (d.lift_low > 0 or d.lift_high < 0) == outside
        word = verdict(d)
        assert word == ("better" if d.low > 0 else "worse" if d.high < 0 else "not yet")
        seen[word] += 1
    assert min(seen.values()) > 20  # all three outcomes were exercised


def test_the_always_valid_interval_is_wider_than_the_fixed_one_and_narrows_with_users() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(1, 30, (2, 4000))
    x = rng.binomial(y, 0.1)
    widths = []
    for n in (250, 1000, 4000):
        c, t = ratio_estimate(x[0, :n], y[0, :n]), ratio_estimate(x[1, :n], y[1, :n])
        always, fixed = ratio_difference(c, t), fixed_horizon_difference(c, t)
        assert always.high - always.low > fixed.high - fixed.low  # type: ignore[operator]
        widths.append(always.high - always.low)  # type: ignore[operator]
    assert widths[0] > widths[1] > widths[2]


def test_verdict_boundaries() -> None:
    def diff(low: float, high: float) -> RatioDifference:
        return RatioDifference(diff=(low + high) / 2, se=1.0, low=low, high=high, z=1.0, p_value=0.5)

    assert verdict(diff(1e-9, 0.2)) == "better"
    assert verdict(diff(-0.2, -1e-9)) == "worse"
    assert verdict(diff(0.0, 0.2)) == "not yet"  # 0 on the edge: p = α, not below it
    assert verdict(diff(-0.2, 0.0)) == "not yet"
    assert verdict(diff(-0.1, 0.1)) == "not yet"


def test_power_at_the_mde_is_the_quoted_power() -> None:
    se = 0.01
    mde = (Z_95 + Z_POWER_80) * se
    # Φ(z_0.8) + Φ(-z_0.8 - 2 z_0.975): 0.8 plus the far tail 9.6e-7.
    assert power(mde, se) == pytest.approx(0.8000009605622266, rel=1e-9)
    assert power(-mde, se) == power(mde, se)
    assert power(0.0, se) == pytest.approx(0.05, rel=1e-12)  # no effect: the test's size
    with pytest.raises(ValueError, match="se must be positive"):
        power(0.1, 0.0)


def test_users_needed_by_hand() -> None:
    """Always valid, effect 5% of R_c = 1/60, τ = 0.0625 so τ/δ = 3.75: s solves
    s = c(3.75² s²) + z_0.8, s = 4.24388494978335 (mpmath); N = (60 s)² (7/144 + 9/144) / 0.5 =
    14408.45 users, 7205 per arm. The fixed horizon needs (2.8015852 × 60)² × 0.2222 = 6279.1: 3140."""
    c, t = ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT)
    assert users_needed(c, t, 0.05) == (7205, 7205)
    assert users_needed(c, t, 0.05, method="fixed_horizon") == (3140, 3140)
    # 80/20 fixed: N = (168.095)² (7/144 / 0.8 + 9/144 / 0.2) = 10546.9 -> 8438, 2110.
    assert users_needed(c, t, 0.05, control_share=0.8, method="fixed_horizon") == (8438, 2110)
    assert users_needed(ratio_estimate(np.array([1]), np.array([2])), t, 0.05) is None
    with pytest.raises(ValueError, match="control_share"):
        users_needed(c, t, 0.05, control_share=1.0)


def test_a_small_seeded_aa_run_read_at_every_look() -> None:
    """120 null experiments, 400 users per arm with 1-60 impressions each and a Beta(2, 18) click
    propensity per user, read at 20 equally spaced looks and stopped at the first verdict: the
    always-valid verdict stays within α while the fixed-horizon test read the same way does not, and
    the per-impression test is worse still. Seeded, so the figures are fixed; the 1,000-experiment
    calibration at 1 to 100 looks is bench/ab_calibration.py."""
    rng = np.random.default_rng(2026)
    always = fixed = per_impression = 0
    runs = 120
    for _ in range(runs):
        y = rng.geometric(1 / 15, (2, 400)).clip(max=60)
        x = rng.binomial(y, rng.beta(2, 18, (2, 400)))
        hit = {"always": False, "fixed": False, "imp": False}
        for n in range(20, 401, 20):
            c, t = ratio_estimate(x[0, :n], y[0, :n]), ratio_estimate(x[1, :n], y[1, :n])
            hit["always"] |= verdict(ratio_difference(c, t)) != "not yet"
            hit["fixed"] |= verdict(fixed_horizon_difference(c, t)) != "not yet"
            old = two_proportion_ztest(
                int(x[0, :n].sum()), int(y[0, :n].sum()), int(x[1, :n].sum()), int(y[1, :n].sum())
            )
            hit["imp"] |= old.p_value is not None and old.p_value < 0.05
        always += hit["always"]
        fixed += hit["fixed"]
        per_impression += hit["imp"]
    assert always / runs <= 0.05
    assert fixed / runs >= 0.12
    assert per_impression > fixed
