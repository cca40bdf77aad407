"""A/B statistics against values computed offline (by hand and with scipy.stats), hard-coded here."""

from __future__ import annotations

import math

import pytest

from app.experiment.ab_stats import chi2_sf, normal_sf, srm_check, two_proportion_ztest, wilson_interval


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
