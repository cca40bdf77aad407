"""A/B statistics read at every look: A/A false positives, power and CUPED, on simulated user-randomised
traffic analysed by the service's own functions (`app.experiment.ab_stats`: `ratio_estimate`,
`ratio_difference`, `verdict`, `fixed_horizon_difference`; `app.experiment.cuped`).

Each simulated user has an activity level a ~ LogNormal(μ, σ) and makes 1 + Poisson(a) requests of
`k` impressions each (a heavy tail), and clicks each impression with their own propensity
p ~ Beta (mean `ctr`), so a user's impressions are correlated. 70% of users also have a pre-period
(the two weeks before the experiment): 1 + Poisson(a) requests again, clicked with the same
propensity after a log-normal drift. That is the covariate CUPED uses; activity and taste both carry
over, as they do in real logs. Users arrive in order; a "look"
analyses every user so far, and an experiment is counted as called at the first look whose verdict
is "better" or "worse" (what a team watching the dashboard does).

- A/A at 1, 10, 20 and 100 looks: the share of null experiments ever called, for the always-valid
  verdict (must stay ≤ α plus its sampling error), the fixed-horizon test read at every look, and the
  always-valid verdict with CUPED.
- Power at +10% and +20%: always-valid at 20 looks (plain and with CUPED) against the fixed-horizon
  test read once at the same final sample size, and the median share of users the always-valid
  verdict needed when it stopped early.
- CUPED: the variance reduction of the difference and the pre/post correlation of the users' CTR.
- The issue's own check: 500 users per arm read at 20 looks (any-look false positives ≤ 6.5%), and a
  +20% lift with 4,000 users per arm at 20 looks (found ≥ 70% of the time).

    python -m bench.ab_calibration [--experiments 1000] [--power-experiments 1000] [--users 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from app.experiment.ab_stats import fixed_horizon_difference, ratio_difference, ratio_estimate, verdict
from app.experiment.cuped import cuped_estimates
from app.experiment.proportions import ALPHA, wilson_interval
from bench.ab_calibration_render import plot, render_markdown
from bench.report import RESULTS_DIR, write_report

NAME = "ab_calibration"
LOOKS = (1, 10, 20, 100)
LIFTS = (0.10, 0.20)
POWER_LOOKS = 20
CHECK_FP_USERS, CHECK_POWER_USERS, CHECK_LOOKS = 500, 4000, 20  # the issue's own check
CHECK_FP_MAX, CHECK_POWER_MIN = 0.065, 0.70
Arm = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Traffic:
    users: int = 4000  # per arm, at the last look
    k: int = 10  # impressions per request
    requests_mu: float = 0.7  # log-scale mean of a user's activity (extra requests per period)
    requests_sigma: float = 1.0
    ctr: float = 0.04  # mean click propensity
    beta_concentration: float = 20.0  # a + b of the Beta propensity: smaller = users differ more
    pre_share: float = 0.7  # users with a pre-period
    drift_sigma: float = 0.3  # log-normal drift of a user's propensity between the two periods


def draw_users(rng: np.random.Generator, t: Traffic, lift: float = 0.0) -> tuple[Arm, Arm]:
    """One arm's per-user (clicks, impressions) in the experiment and in the pre-period, [users] each;
    the treatment's propensities are multiplied by 1 + lift in the experiment only."""
    a = t.ctr * t.beta_concentration
    propensity = rng.beta(a, t.beta_concentration - a, t.users)
    activity = rng.lognormal(
        t.requests_mu, t.requests_sigma, t.users
    )  # a heavy user is heavy in both periods
    impressions = t.k * (1 + rng.poisson(activity))
    clicks = rng.binomial(impressions, np.minimum(propensity * (1.0 + lift), 1.0))
    has_pre = rng.random(t.users) < t.pre_share
    pre_impressions = np.where(has_pre, t.k * (1 + rng.poisson(activity)), 0)
    drift = rng.lognormal(0.0, t.drift_sigma, t.users)
    pre_clicks = rng.binomial(pre_impressions, np.minimum(propensity * drift, 1.0))
    return (clicks, impressions), (pre_clicks, pre_impressions)


def draw_arm(rng: np.random.Generator, t: Traffic, lift: float = 0.0) -> Arm:
    """Per-user (clicks, impressions) of one arm, [users] each."""
    return draw_users(rng, t, lift)[0]


def _prefix(arm: Arm, n: int) -> Arm:
    return arm[0][:n], arm[1][:n]


def first_call(c: Arm, t: Arm, c_pre: Arm, t_pre: Arm, looks: int, method: str) -> int | None:
    """The 1-based look at which the experiment is first called better or worse (None: never)."""
    n = len(c[0])
    for look in range(1, looks + 1):
        m = round(n * look / looks)
        cp, tp = _prefix(c, m), _prefix(t, m)
        if method == "cuped":
            cu = cuped_estimates(cp, tp, _prefix(c_pre, m), _prefix(t_pre, m))
            d = ratio_difference(cu.control, cu.treatment)
        elif method == "fixed_horizon":
            d = fixed_horizon_difference(ratio_estimate(*cp), ratio_estimate(*tp))
        else:
            d = ratio_difference(ratio_estimate(*cp), ratio_estimate(*tp))
        if verdict(d) != "not yet":
            return look
    return None


def _share(hits: int, n: int) -> dict[str, Any]:
    ci = wilson_interval(hits, n)
    return {"share": hits / n, "ci": [ci.low, ci.high], "hits": hits, "experiments": n}


def aa_at_looks(rng: np.random.Generator, t: Traffic, experiments: int) -> list[dict[str, Any]]:
    """Per number of looks: the share of null experiments ever called, per method."""
    rows = []
    for looks in LOOKS:
        hits = dict.fromkeys(("always_valid", "fixed_horizon", "cuped"), 0)
        for _ in tqdm(range(experiments), desc=f"A/A, {looks} looks", leave=False):
            (c, c_pre), (tr, t_pre) = draw_users(rng, t), draw_users(rng, t)
            for method in hits:
                hits[method] += first_call(c, tr, c_pre, t_pre, looks, method) is not None
        rows.append({"looks": looks, **{m: _share(h, experiments) for m, h in hits.items()}})
    return rows


def power_at(rng: np.random.Generator, t: Traffic, experiments: int, lift: float) -> dict[str, Any]:
    """At one true lift: always-valid at POWER_LOOKS (plain, CUPED), always-valid and fixed-horizon
    read once at the end; wrong-direction calls; the share of users seen when always-valid stopped."""
    found = dict.fromkeys(("always_valid", "cuped", "always_valid_once", "fixed_horizon_once"), 0)
    wrong, stopped_at, reductions = 0, [], []
    for _ in tqdm(range(experiments), desc=f"power at +{lift:.0%}", leave=False):
        (c, c_pre), (tr, t_pre) = draw_users(rng, t), draw_users(rng, t, lift)
        look = first_call(c, tr, c_pre, t_pre, POWER_LOOKS, "always_valid")
        if look is not None:
            cp, tp = (
                _prefix(c, round(t.users * look / POWER_LOOKS)),
                _prefix(tr, round(t.users * look / POWER_LOOKS)),
            )
            right = verdict(ratio_difference(ratio_estimate(*cp), ratio_estimate(*tp))) == "better"
            found["always_valid"] += right
            wrong += not right
            stopped_at.append(look / POWER_LOOKS)
        found["cuped"] += first_call(c, tr, c_pre, t_pre, POWER_LOOKS, "cuped") is not None
        once = ratio_difference(ratio_estimate(*c), ratio_estimate(*tr))
        found["always_valid_once"] += verdict(once) == "better"
        found["fixed_horizon_once"] += (
            verdict(fixed_horizon_difference(ratio_estimate(*c), ratio_estimate(*tr))) == "better"
        )
        reductions.append(cuped_estimates(c, tr, c_pre, t_pre).variance_reduction)
    return {
        "lift": lift,
        **{m: _share(h, experiments) for m, h in found.items()},
        "wrong_direction": wrong,
        "median_share_of_users_at_stop": float(np.median(stopped_at)) if stopped_at else None,
        "cuped_variance_reduction": float(np.mean([r for r in reductions if r is not None])),
    }


def cuped_study(rng: np.random.Generator, t: Traffic, experiments: int) -> dict[str, Any]:
    """The variance reduction CUPED gives on the final sample, and the pre/post correlation of the
    users' CTR (users with a pre-period) that produces it."""
    reductions, correlations = [], []
    for _ in range(experiments):
        (c, c_pre), (tr, t_pre) = draw_users(rng, t), draw_users(rng, t)
        reductions.append(cuped_estimates(c, tr, c_pre, t_pre).variance_reduction)
        has = c_pre[1] > 0
        correlations.append(float(np.corrcoef(c[0][has] / c[1][has], c_pre[0][has] / c_pre[1][has])[0, 1]))
    r = np.array([x for x in reductions if x is not None])
    return {
        "experiments": experiments,
        "variance_reduction_mean": float(r.mean()),
        "variance_reduction_p10_p90": [float(np.percentile(r, 10)), float(np.percentile(r, 90))],
        "pre_post_ctr_correlation": float(np.mean(correlations)),
        "reductions": r.tolist(),
    }


def issue_check(rng: np.random.Generator, t: Traffic, experiments: int) -> dict[str, Any]:
    """The issue's check through ratio_estimate / ratio_difference / verdict: null at 500 users per
    arm read at 20 looks; a +20% lift with 4,000 users per arm read at 20 looks."""
    null_t = Traffic(**{**asdict(t), "users": CHECK_FP_USERS})
    lift_t = Traffic(**{**asdict(t), "users": CHECK_POWER_USERS})
    fp = found = 0
    for _ in tqdm(range(experiments), desc="the issue's check", leave=False):
        (c, c_pre), (tr, t_pre) = draw_users(rng, null_t), draw_users(rng, null_t)
        fp += first_call(c, tr, c_pre, t_pre, CHECK_LOOKS, "always_valid") is not None
        (c, c_pre), (tr, t_pre) = draw_users(rng, lift_t), draw_users(rng, lift_t, 0.20)
        found += first_call(c, tr, c_pre, t_pre, CHECK_LOOKS, "always_valid") is not None
    return {"false_positives": _share(fp, experiments), "found_plus_20": _share(found, experiments)}


def example_path(
    rng: np.random.Generator, t: Traffic, lift: float = 0.10, looks: int = 40
) -> list[dict[str, float]]:
    """One experiment's always-valid and fixed-horizon intervals of the relative lift, look by look."""
    (c, _), (tr, _) = draw_users(rng, t), draw_users(rng, t, lift)
    path = []
    for look in range(1, looks + 1):
        m = round(t.users * look / looks)
        ce, te = ratio_estimate(*_prefix(c, m)), ratio_estimate(*_prefix(tr, m))
        a, f = ratio_difference(ce, te), fixed_horizon_difference(ce, te)
        path.append({"users": m, "lift": a.lift, "low": a.lift_low, "high": a.lift_high,
                     "fixed_low": f.lift_low, "fixed_high": f.lift_high})  # fmt: skip
    return path


def run_benchmark(
    experiments: int, power_experiments: int, traffic: Traffic, seed: int, out_dir: Path, command: str
) -> dict[str, Any]:
    started = time.perf_counter()
    seqs = np.random.SeedSequence(seed).spawn(5 + len(LIFTS))
    rngs = [np.random.default_rng(s) for s in seqs]
    aa = aa_at_looks(rngs[0], traffic, experiments)
    power = [power_at(rngs[5 + i], traffic, power_experiments, lift) for i, lift in enumerate(LIFTS)]
    cuped = cuped_study(rngs[1], traffic, min(experiments, 300))
    check = issue_check(rngs[2], traffic, experiments)
    path = example_path(rngs[3], traffic)
    bound = ALPHA + 1.96 * float(np.sqrt(ALPHA * (1 - ALPHA) / experiments))  # α plus its sampling error
    checks = {
        **{f"aa_{r['looks']}_looks_at_most_alpha": r["always_valid"]["share"] <= bound for r in aa},
        **{f"aa_{r['looks']}_looks_cuped_at_most_alpha": r["cuped"]["share"] <= bound for r in aa},
        "fixed_horizon_at_20_looks_above_alpha": next(r for r in aa if r["looks"] == 20)["fixed_horizon"][
            "share"
        ]
        > bound,
        "issue_false_positives_at_most_6.5%": check["false_positives"]["share"] <= CHECK_FP_MAX,
        "issue_plus_20%_found_at_least_70%": check["found_plus_20"]["share"] >= CHECK_POWER_MIN,
        "cuped_reduces_variance": cuped["variance_reduction_mean"] > 0,
    }
    payload: dict[str, Any] = {
        "command": command,
        "seed": seed,
        "traffic": asdict(traffic),
        "alpha": ALPHA,
        "alpha_bound": bound,
        "aa": aa,
        "power": power,
        "cuped": cuped,
        "issue_check": {
            "null_users": CHECK_FP_USERS,
            "lift_users": CHECK_POWER_USERS,
            "looks": CHECK_LOOKS,
            **check,
        },
        "example_path": path,
        "checks": checks,
        "seconds": time.perf_counter() - started,
    }
    png = Path(out_dir) / f"{NAME}.png"
    plot(png, payload)
    payload["plot"] = str(png)
    write_report(NAME, payload, render_markdown(payload), out_dir)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab_calibration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--experiments", type=int, default=1000, help="A/A experiments per number of looks")
    parser.add_argument("--power-experiments", type=int, default=1000, help="experiments per true lift")
    parser.add_argument("--users", type=int, default=Traffic.users, help="users per arm at the last look")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    for name in ("experiments", "power_experiments", "users"):
        if getattr(args, name) < 2:
            parser.exit(2, f"--{name.replace('_', '-')} must be at least 2, got {getattr(args, name)}\n")
    command = " ".join(["python -m bench.ab_calibration", *(sys.argv[1:] if argv is None else argv)])
    payload = run_benchmark(
        args.experiments, args.power_experiments, Traffic(users=args.users), args.seed, args.out, command
    )
    print((Path(args.out) / f"{NAME}.md").read_text())
    return 0 if all(payload["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
