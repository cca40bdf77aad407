"""Proportions and counts against values computed offline (by hand, with scipy.stats and with
mpmath), hard-coded here: tails, Wilson, the per-impression test, and the sample-ratio check."""

from __future__ import annotations

import math

import pytest

from app.experiment.proportions import (
    chi2_sf,
    normal_sf,
    srm_always_valid_p,
    srm_check,
    two_proportion_ztest,
    wilson_interval,
    z_for_alpha,
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
    assert result.always_valid_p == pytest.approx(0.538335975338470128, rel=1e-6)
    assert not result.mismatch and result.warning is None


def test_srm_flags_a_skewed_split() -> None:
    # (300^2 / 5000) * 2 = 36: p = 1.97e-9.
    result = srm_check([5300, 4700], [0.5, 0.5])
    assert result.chi2 == pytest.approx(36.0)
    assert result.p_value == pytest.approx(1.9731752900753933e-09, rel=1e-6)
    assert result.always_valid_p == pytest.approx(2.57029431928714658e-07, rel=1e-6)
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


def test_z_for_alpha_inverts_the_normal_tail() -> None:
    assert z_for_alpha(0.05) == pytest.approx(1.959963984540054, rel=1e-12)
    assert z_for_alpha(0.05 / 3) == pytest.approx(2.393979799818509, rel=1e-9)  # scipy norm.isf(0.05 / 6)
    with pytest.raises(ValueError, match="alpha"):
        z_for_alpha(0.0)


def test_srm_always_valid_p_by_hand() -> None:
    # Λ = Γ(C)/Γ(C+n) Π Γ(C p_i + n_i)/Γ(C p_i) / Π p_i^n_i with C = 1000, computed with mpmath.
    assert srm_always_valid_p([5300, 4700], [0.5, 0.5]) == pytest.approx(2.57029431928714658e-07, rel=1e-6)
    assert srm_always_valid_p([5100, 4900], [0.5, 0.5]) == pytest.approx(0.538335975338470128, rel=1e-6)
    assert srm_always_valid_p([880, 120], [0.9, 0.1]) == pytest.approx(0.501243228328292173, rel=1e-6)
    assert srm_always_valid_p([0, 0], [0.5, 0.5]) == 1.0  # nothing seen: no evidence
    with pytest.raises(ValueError, match="positive share"):
        srm_always_valid_p([1, 2], [1.0, 0.0])


def test_the_always_valid_srm_holds_its_level_when_read_after_every_unit() -> None:
    """A fair 50/50 split watched after each of 2,000 units, 300 times: the always-valid p goes below
    0.05 in at most 5% of the runs (Ville), where the chi-square read the same way does far more."""
    import numpy as np

    rng = np.random.default_rng(11)
    always = fixed = 0
    for _ in range(300):
        treated = np.cumsum(rng.random(2000) < 0.5)
        looks = range(20, 2001, 20)
        always += any(
            srm_always_valid_p([n - int(treated[n - 1]), int(treated[n - 1])], [0.5, 0.5]) < 0.05
            for n in looks
        )
        fixed += any(
            (srm_check([n - int(treated[n - 1]), int(treated[n - 1])], [0.5, 0.5]).p_value or 1) < 0.05
            for n in looks
        )
    assert always / 300 <= 0.05
    assert fixed / 300 >= 0.2
