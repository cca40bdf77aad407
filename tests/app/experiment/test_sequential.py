"""The normal-mixture confidence sequence against values computed offline with mpmath, and its
promise checked on simulated paths: a null read at every look crosses at most α of the time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiment.sequential import (
    alpha_of,
    mixture_critical_value,
    mixture_p_value,
    required_signal,
)


def test_critical_value_by_hand() -> None:
    # c(x) = sqrt((1 + 1/x)(2 ln 20 + ln(1 + x))), mpmath at 30 digits.
    assert mixture_critical_value(8.0) == pytest.approx(3.03517302060355803, rel=1e-12)
    assert mixture_critical_value(1.0) == pytest.approx(3.65639487136384855, rel=1e-12)
    assert mixture_critical_value(0.0) == math.inf  # no mixing mass: nothing can be rejected
    assert mixture_critical_value(8.0, alpha=0.01) > mixture_critical_value(8.0)
    with pytest.raises(ValueError, match="alpha"):
        mixture_critical_value(1.0, alpha=1.0)


def test_critical_value_is_flat_around_its_minimum_and_steep_below_it() -> None:
    """Why τ is set to the planned effect: c is within 10% of its best from x = 2 to 100."""
    best = min(mixture_critical_value(x) for x in np.linspace(1, 50, 500))
    assert 3.03 < best < 3.04
    assert all(mixture_critical_value(x) < 1.1 * best for x in (2.0, 8.0, 30.0, 100.0))
    assert mixture_critical_value(0.25) > 1.8 * best


def test_p_value_and_critical_value_are_one_rule() -> None:
    # log Λ = z² x / (2 (1 + x)) - ln(1 + x) / 2 at z = 3, x = 2: p = 0.0862337319730456 (mpmath).
    assert mixture_p_value(3.0, 2.0) == pytest.approx(0.0862337319730456481, rel=1e-12)
    for x in (0.3, 2.0, 8.0, 40.0):
        c = mixture_critical_value(x)
        assert mixture_p_value(c, x) == pytest.approx(0.05, rel=1e-9)  # at the boundary: p = α
        assert mixture_p_value(c * 1.01, x) < 0.05 < mixture_p_value(c * 0.99, x)
    assert mixture_p_value(0.0, 5.0) == 1.0 and mixture_p_value(10.0, 0.0) == 1.0


def test_required_signal_by_hand() -> None:
    # s = c((τ/δ)² s²) + z_0.8 solved with mpmath.findroot.
    assert required_signal(1.0, 0.8416212335729143) == pytest.approx(3.90008014993041951, rel=1e-9)
    assert required_signal(0.5, 0.8416212335729143) == pytest.approx(3.92938531579801574, rel=1e-9)
    assert alpha_of(1.959963984540054) == pytest.approx(0.05, rel=1e-12)
    with pytest.raises(ValueError, match="tau_over_effect"):
        required_signal(0.0, 0.84)


def test_a_null_path_read_at_every_look_crosses_at_most_alpha() -> None:
    """3,000 seeded Gaussian random walks (the estimate's path under the null), each read at 1,000
    looks with x growing to 100: the share ever crossing is at most 5% (Ville's inequality), where a
    fixed 1.96 read the same way crosses far more often."""
    rng = np.random.default_rng(5)
    looks = 1000
    t = np.arange(1, looks + 1) / looks
    walk = np.cumsum(rng.normal(0, math.sqrt(1 / looks), (3000, looks)), axis=1)
    z = np.abs(walk / np.sqrt(t))
    c = np.array([mixture_critical_value(100.0 * ti) for ti in t])
    always = float((z > c).any(axis=1).mean())
    fixed = float((z > 1.959963984540054).any(axis=1).mean())
    assert always <= 0.05
    assert fixed > 0.4
