"""Always-valid inference: the normal-mixture confidence sequence (mSPRT) behind every A/B verdict.

Why: the dashboard shows the verdict live and teams stop when it says "better". A fixed-horizon
test read at every look is wrong far more often than its α (about 20% at 10 looks, 25% at 20 for a
nominal 5%). A confidence sequence holds its α at every look together, however often it is read and
whenever the reader stops.

The estimate. At any look the difference of two arms' ratio metrics D̂ (the user-level delta method,
`app.experiment.ab_stats`) is asymptotically N(θ, V), V = SE². Waudby-Smith, Arnold, Wu, Cook &
Ramdas ("Time-uniform central limit theory and asymptotic confidence sequences", Annals of Statistics
2024) show that plugging the estimated variance into the Gaussian boundary gives a sequence whose
coverage holds uniformly in time asymptotically; that is what this module does.

The statistic (Robbins 1970; Johari, Koomen, Pekelis & Walsh, "Always valid inference: continuous
monitoring of A/B tests", Operations Research 2022, sec. 4, the mixture SPRT Optimizely runs):
mix the Gaussian likelihood ratio of θ against 0 over θ ~ N(0, τ²),

    Λ = ∫ φ((D̂ - θ)/√V) / φ(D̂/√V) dN(θ; 0, τ²) = sqrt(V / (V + τ²)) · exp(D̂² τ² / (2 V (V + τ²))).

Under θ = 0 the sequence Λ_n is a non-negative martingale of mean 1, so Ville's inequality gives
P(Λ_n ≥ 1/α at some look n) ≤ α: the test may be read at every look. With x = τ² / V and z = D̂/√V,

    log Λ = z² x / (2 (1 + x)) - ½ log(1 + x),   so   Λ ≥ 1/α  ⟺  |z| ≥ c(x),
    c(x) = sqrt((1 + 1/x) · (2 log(1/α) + log(1 + x))).

Testing every θ (D̂ shifted by θ) and keeping those not rejected gives the confidence sequence
D̂ ± c(x) √V, the normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon ("Time-uniform,
nonparametric, nonasymptotic confidence sequences", Annals of Statistics 2021, eq. (14)) and
Waudby-Smith et al.'s Theorem 2.2 with ρ² = τ² / (n σ²). The always-valid p-value is
p = min(1, 1/Λ). Interval, p-value and verdict are therefore one rule: p < α exactly when 0 lies
outside D̂ ± c √V (`mixture_p_value` and `mixture_critical_value` are the two faces of it).

The mixing scale τ. c(x) is smallest near x = 8 (c ≈ 3.04 at α = 0.05, against the fixed horizon's
1.96), stays within 10% of that for x from 2 to 100, and grows fast below x = 1. A true effect δ is
found about when δ/√V reaches c + z_power ≈ 3.9, i.e. at x ≈ 15 τ²/δ². Setting τ to the effect the
experiment is planned to detect puts that moment in the flat part of c, and effects from half to
several times the planned one lose little: τ = planned relative lift × the pooled rate of both arms
(the control's rate under the null). The default planned lift is 15%: the power for true lifts
from 7.5% to 30% is then within a few points of the best any τ gives (at +20%, 4,000 users per arm,
20 looks, τ tuned for 5% finds the lift less than half as often on hard traffic as τ tuned for
10-20%), and a team that plans for smaller effects says so when it starts the experiment.
`bench/ab_calibration.py` measures the false-positive rate at 1 to 100 looks, and the power at
+10% and +20%, with it.

Sample size. At the current V an effect δ is found by now with probability at least `power` when
δ ≥ (c(τ²/V) + z_power) √V (earlier looks only add to it): the sequential MDE. The users needed for
an effect δ solve s = c((τ/δ)² s²) + z_power for the signal-to-noise s = δ/√V it needs (the left
side minus the right grows with s, so bisection finds it), then N = s² σ²_per-user / δ².

math only (the service has no scipy).
"""

from __future__ import annotations

import math

from app.experiment.proportions import normal_sf

ALPHA = 0.05  # the level every always-valid verdict holds, at any number of looks
PLANNED_LIFT = 0.15  # default planned relative effect: sets the mixing scale τ (module docstring)


def alpha_of(z_crit: float) -> float:
    """The two-sided level a fixed-horizon critical value stands for (1.96 -> 0.05)."""
    return 2.0 * normal_sf(z_crit)


def mixture_critical_value(x: float, alpha: float = ALPHA) -> float:
    """c(x): |D̂| / SE must reach it for Λ ≥ 1/α, x = τ² / V (inf when x is 0: no mixing, no test)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if x <= 0:
        return math.inf
    return math.sqrt((1.0 + 1.0 / x) * (2.0 * math.log(1.0 / alpha) + math.log1p(x)))


def mixture_p_value(z: float, x: float) -> float:
    """The always-valid p-value min(1, 1/Λ) of z = D̂ / SE at x = τ² / V."""
    if x <= 0:
        return 1.0
    log_lambda = z * z * x / (2.0 * (1.0 + x)) - 0.5 * math.log1p(x)
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


def required_signal(tau_over_effect: float, z_power: float, alpha: float = ALPHA) -> float:
    """s = δ / SE at which an effect δ is found with the quoted power: s = c((τ/δ)² s²) + z_power."""
    if tau_over_effect <= 0:
        raise ValueError(f"tau_over_effect must be positive, got {tau_over_effect}")

    def gap(s: float) -> float:
        return s - mixture_critical_value((tau_over_effect * s) ** 2, alpha) - z_power

    low, high = 1e-6, 1.0
    while gap(high) < 0:
        high *= 2.0
    for _ in range(100):  # bisection to machine precision
        mid = 0.5 * (low + high)
        low, high = (mid, high) if gap(mid) < 0 else (low, mid)
    return high
