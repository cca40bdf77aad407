"""A/B statistics against values computed offline (by hand and with scipy.stats), hard-coded here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiment.ab_stats import (
    Z_95,
    Z_POWER_80,
    RatioDifference,
    chi2_sf,
    normal_sf,
    power,
    ratio_difference,
    ratio_estimate,
    srm_check,
    two_proportion_ztest,
    users_needed,
    verdict,
    wilson_interval,
)


def test_normal_tail_matches_scipy() -> None:
    assert normal_sf(1.0) == pytest.approx(0.15865525393145707, rel=1e-12)
    assert normal_sf(5.0) == pytest.approx(2.866515718791933e-07, rel=1e-9)
    assert normal_sf(0.0) == 0.5


@pytest.mark.parametrize(
    ("x", "dof", "expected"),  # scipy.stats.chi2.sf(x, dof), computed offline
    [
        (4.0, 1, 0.04550026389635857),
        (3.5, 2, 0.1737739434504451),
        (7.2, 3, 0.06578905268507099),
        (9.49, 4, 0.049953131223294894),
        (11.07, 5, 0.050009618622405425),
        (25.0, 6, 0.00034145459689170836),
        (0.3, 7, 0.9998999626177479),
    ],
)
def test_chi2_tail_matches_scipy(x: float, dof: int, expected: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(expected, rel=1e-9)


def test_chi2_tail_edges_and_bad_dof() -> None:
    assert chi2_sf(0.0, 3) == 1.0
    with pytest.raises(ValueError, match="dof"):
        chi2_sf(1.0, 0)


def test_wilson_interval_matches_scipy_binomtest() -> None:
    ci = wilson_interval(10, 100)  # binomtest(10, 100).proportion_ci(method="wilson")
    assert ci.rate == 0.1
    assert ci.low == pytest.approx(0.05522913706067508, rel=1e-9)
    assert ci.high == pytest.approx(0.17436566150491345, rel=1e-9)
    zero = wilson_interval(0, 20)  # a zero rate still gets a real upper bound
    assert (zero.low, zero.high) == (0.0, pytest.approx(0.16112515805281935, rel=1e-9))
    assert wilson_interval(0, 0).rate is None
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(5, 3)


def test_two_proportion_ztest_by_hand() -> None:
    # 200/1000 vs 250/1000: pooled 0.225, se = sqrt(.225 * .775 * 2/1000) = 0.0186748, z = 0.05 / se.
    result = two_proportion_ztest(200, 1000, 250, 1000)
    assert result.diff == pytest.approx(0.05)
    assert result.z == pytest.approx(2.677397763008329, rel=1e-12)
    assert result.p_value == pytest.approx(0.007419649261025687, rel=1e-9)
    # Unpooled se = sqrt(.2*.8/1000 + .25*.75/1000) = 0.0186414; diff -/+ 1.96 se.
    assert result.low == pytest.approx(0.013463621687539853, rel=1e-9)
    assert result.high == pytest.approx(0.08653637831246015, rel=1e-9)


def test_two_proportion_ztest_is_symmetric_and_undefined_without_data() -> None:
    flipped = two_proportion_ztest(250, 1000, 200, 1000)
    assert flipped.z == pytest.approx(-2.677397763008329)
    assert flipped.p_value == pytest.approx(0.007419649261025687, rel=1e-9)
    assert two_proportion_ztest(0, 0, 5, 10).diff is None
    no_events = two_proportion_ztest(0, 10, 0, 10)
    assert (no_events.diff, no_events.z, no_events.p_value) == (0.0, None, None)


def test_srm_passes_a_plausible_split() -> None:
    # (100^2 / 5000) * 2 = 4.0 with 1 dof: p = 0.0455 > 0.001.
    result = srm_check([5100, 4900], [0.5, 0.5])
    assert result.chi2 == pytest.approx(4.0)
    assert result.dof == 1
    assert result.p_value == pytest.approx(0.04550026389635857, rel=1e-9)
    assert not result.mismatch and result.warning is None


def test_srm_flags_a_skewed_split() -> None:
    # (300^2 / 5000) * 2 = 36: p = 1.97e-9.
    result = srm_check([5300, 4700], [0.5, 0.5])
    assert result.chi2 == pytest.approx(36.0)
    assert result.p_value == pytest.approx(1.9731752900753933e-09, rel=1e-6)
    assert result.mismatch
    assert result.warning is not None and "sample ratio mismatch" in result.warning


def test_srm_uneven_share_and_three_arms() -> None:
    # 90/10 split of 1000: (20^2/900 + 20^2/100) = 4.444, p = 0.0350.
    uneven = srm_check([880, 120], [0.9, 0.1])
    assert uneven.chi2 == pytest.approx(4.444444444444445)
    assert uneven.p_value == pytest.approx(0.03501498101966245, rel=1e-9)
    # Three equal arms of 300: (0 + 400 + 400) / 100 = 8 with 2 dof: p = e^-4.
    three = srm_check([100, 120, 80], [1 / 3, 1 / 3, 1 / 3])
    assert three.chi2 == pytest.approx(8.0)
    assert three.p_value == pytest.approx(math.exp(-4))


def test_srm_with_a_zero_share_arm() -> None:
    assert srm_check([500, 0], [1.0, 0.0]).mismatch is False  # nothing to test, nothing wrong
    stray = srm_check([500, 3], [1.0, 0.0])
    assert stray.mismatch and stray.warning is not None and "share 0" in stray.warning
    with pytest.raises(ValueError, match="sum to 1"):
        srm_check([1, 1], [0.5, 0.6])


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
    d = ratio_difference(ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT))
    assert d.diff == pytest.approx(1 / 6)
    assert d.se == pytest.approx(1 / math.sqrt(27), rel=1e-12)
    assert d.z == pytest.approx(math.sqrt(3) / 2, rel=1e-12)
    assert d.p_value == pytest.approx(0.3864762307712327, rel=1e-9)  # 2 * scipy.stats.norm.sf(sqrt(3)/2)
    assert (d.low, d.high) == (
        pytest.approx(1 / 6 - Z_95 / math.sqrt(27), rel=1e-12),
        pytest.approx(1 / 6 + Z_95 / math.sqrt(27), rel=1e-12),
    )
    # Lift 0.5 / (1/3) - 1 = 0.5; Var = (1/48) / (1/9) + (1/4) (7/432) / (1/81) = 0.1875 + 0.328125.
    assert d.lift == pytest.approx(0.5)
    assert d.lift_se == pytest.approx(math.sqrt(0.515625), rel=1e-12)
    assert d.lift_low == pytest.approx(0.5 - Z_95 * math.sqrt(0.515625), rel=1e-12)
    # MDE = (z_0.975 + z_0.8) SE = 2.8015852181 / sqrt(27); relative: over R_c = 1/3.
    assert d.mde == pytest.approx((Z_95 + Z_POWER_80) / math.sqrt(27), rel=1e-12)
    assert d.mde_relative == pytest.approx(3 * (Z_95 + Z_POWER_80) / math.sqrt(27), rel=1e-12)
    assert verdict(d) == "not yet"


def test_ratio_difference_without_variance_gives_the_point_estimate_only() -> None:
    one = ratio_difference(ratio_estimate(np.array([1]), np.array([4])), ratio_estimate(*TREATMENT))
    assert one.diff == pytest.approx(0.25) and one.lift == pytest.approx(1.0)
    assert (one.se, one.low, one.z, one.p_value, one.mde) == (None, None, None, None, None)
    flat = ratio_estimate(np.array([1, 2]), np.array([2, 4]))
    same = ratio_difference(flat, flat)  # SE 0: nothing to test
    assert (same.diff, same.se, same.z, same.p_value) == (0.0, 0.0, None, None)
    assert verdict(same) == "not yet"
    none = ratio_difference(ratio_estimate(np.zeros(0), np.zeros(0)), flat)
    assert none.diff is None and verdict(none) == "not yet"


def test_interval_and_test_agree_on_many_random_tables() -> None:
    """p < 0.05 exactly when 0 lies outside the 95% interval, and the verdict says which side."""
    rng = np.random.default_rng(7)
    seen = {"better": 0, "worse": 0, "not yet": 0}
    for _ in range(600):
        arms = []
        for _ in range(2):
            n = int(rng.integers(2, 60))
            y = rng.integers(1, 30, n)
            x = rng.binomial(y, rng.uniform(0.02, 0.4))
            arms.append(ratio_estimate(x, y))
        d = ratio_difference(*arms)
        if d.p_value is None:
            continue
        assert (d.p_value < 0.05) == (d.low > 0 or d.high < 0)  # type: ignore[operator]
        word = verdict(d)
        assert word == ("better" if d.low > 0 else "worse" if d.high < 0 else "not yet")  # type: ignore[operator]
        assert (word != "not yet") == (d.p_value < 0.05)
        seen[word] += 1
    assert min(seen.values()) > 20  # all three outcomes were exercised


def test_verdict_boundaries() -> None:
    def diff(low: float, high: float) -> RatioDifference:
        mid = (low + high) / 2
        return RatioDifference(mid, 1.0, low, high, 1.0, 0.5, None, None, None, None, 1.0, None)

    assert verdict(diff(1e-9, 0.2)) == "better"
    assert verdict(diff(-0.2, -1e-9)) == "worse"
    assert verdict(diff(0.0, 0.2)) == "not yet"  # 0 on the edge: p = 0.05, not below it
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
    # Effect 5% of R_c = 1/60; σ_c² = 7/144, σ_t² = 9/144, 50/50: N = (2.8015852 * 60)² (2 * 16/144)
    # = 28255.96 * 0.2222 = 6279.1, so 3139.6 -> 3140 per arm.
    c, t = ratio_estimate(*CONTROL), ratio_estimate(*TREATMENT)
    assert users_needed(c, t, 0.05) == (3140, 3140)
    # 80/20: N = (168.095)² (7/144 / 0.8 + 9/144 / 0.2) = 28255.96 * 0.37326 = 10546.9 -> 8438, 2110.
    assert users_needed(c, t, 0.05, control_share=0.8) == (8438, 2110)
    assert users_needed(ratio_estimate(np.array([1]), np.array([2])), t, 0.05) is None
    with pytest.raises(ValueError, match="control_share"):
        users_needed(c, t, 0.05, control_share=1.0)


def test_a_small_seeded_aa_run_is_calibrated_where_the_per_impression_test_is_not() -> None:
    """200 null experiments, 300 users per arm with 1-60 impressions each and a Beta(2, 18) click
    propensity per user: the user-level test's false-positive share stays near 5% while the
    per-impression test, which counts every impression as independent, is well above it. Seeded, so
    the figures are fixed; the 2,000-experiment calibration is bench/ab_calibration.py."""
    rng = np.random.default_rng(2026)
    user_level = per_impression = 0
    runs = 200
    for _ in range(runs):
        tables = []
        for _ in range(2):
            y = rng.geometric(1 / 15, 300).clip(max=60)
            x = rng.binomial(y, rng.beta(2, 18, 300))
            tables.append((x, y))
        d = ratio_difference(ratio_estimate(*tables[0]), ratio_estimate(*tables[1]))
        user_level += d.p_value is not None and d.p_value < 0.05
        (xc, yc), (xt, yt) = tables
        old = two_proportion_ztest(int(xc.sum()), int(yc.sum()), int(xt.sum()), int(yt.sum()))
        per_impression += old.p_value is not None and old.p_value < 0.05
    assert user_level / runs <= 0.09
    assert per_impression / runs >= 0.12
