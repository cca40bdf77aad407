"""A/A calibration and power of the A/B report's statistics, on simulated user-randomised traffic.

Each simulated experiment draws `users` users per arm. A user makes 1 + ⌊LogNormal(μ, σ)⌋ requests
of `k` impressions each (a heavy tail: a few users see hundreds of items) and clicks each impression
with their own propensity p ~ Beta(a, b) (mean `ctr`), so a user's impressions are correlated — the
situation the per-impression test ignores. The analysis calls the service's own functions
(`app.experiment.ab_stats`: `ratio_estimate`, `ratio_difference`, `verdict`, `power`,
`two_proportion_ztest`) on the per-user (clicks, impressions) tables, exactly as `/v1/ab/report` does.

- A/A: both arms from one population; the share of experiments called significant at α = 0.05 must
  lie in [0.03, 0.07] for the user-level test (and is reported beside the per-impression test's).
- A/B: the treatment's propensities multiplied by 1 + lift; the empirical power (share significant)
  beside the power the MDE formula predicts from each experiment's own SE, Φ(Δ / SE - z_0.975), Δ the
  true difference of the population CTRs.

    python -m bench.ab_calibration [--experiments 2000] [--users 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.experiment.ab_stats import (
    ALPHA,
    power,
    ratio_difference,
    ratio_estimate,
    two_proportion_ztest,
    verdict,
    wilson_interval,
)
from bench.report import RESULTS_DIR, markdown_table, write_report

NAME = "ab_calibration"
CALIBRATED = (0.03, 0.07)  # the A/A false-positive share the user-level test must land in
LIFTS = (0.0, 0.025, 0.05, 0.075, 0.10, 0.15)  # relative CTR effects of the power curve


@dataclass(frozen=True)
class Traffic:
    users: int = 5000  # per arm
    k: int = 10  # impressions per request
    requests_mu: float = 0.7  # log-scale mean of the extra requests per user
    requests_sigma: float = 1.0
    ctr: float = 0.04  # mean click propensity
    beta_concentration: float = 20.0  # a + b of the Beta propensity: smaller = users differ more


def draw_arm(rng: np.random.Generator, t: Traffic, lift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (clicks, impressions) of one arm, [users] each."""
    requests = 1 + np.floor(rng.lognormal(t.requests_mu, t.requests_sigma, t.users)).astype(np.int64)
    impressions = t.k * requests
    a = t.ctr * t.beta_concentration
    propensity = rng.beta(a, t.beta_concentration - a, t.users) * (1.0 + lift)
    clicks = rng.binomial(impressions, np.minimum(propensity, 1.0))
    return clicks, impressions


@dataclass(frozen=True)
class Outcome:
    experiments: int
    significant_user_level: float  # share with p < α, delta method over users
    significant_per_impression: float  # share with p < α, two-proportion test over impressions
    user_level_ci: tuple[float, float]  # Wilson 95% interval of the share
    per_impression_ci: tuple[float, float]
    predicted_power: float  # mean over experiments of Φ(Δ / SE - z) + Φ(-Δ / SE - z)
    mean_se: float
    mean_mde_relative: float
    verdicts: dict[str, int]


def run_experiments(
    rng: np.random.Generator, t: Traffic, n: int, lift: float
) -> tuple[Outcome, np.ndarray, np.ndarray]:
    """`n` experiments at relative effect `lift`; also returns both tests' p-values, [n] each."""
    true_diff = lift * t.ctr  # E[clicks] / E[impressions] = E[p]: propensity is independent of volume
    p_user, p_imp = np.ones(n), np.ones(n)
    predicted, ses, mdes = [], [], []
    words = {"better": 0, "worse": 0, "not yet": 0}
    for i in range(n):
        xc, yc = draw_arm(rng, t)
        xt, yt = draw_arm(rng, t, lift)
        d = ratio_difference(ratio_estimate(xc, yc), ratio_estimate(xt, yt))
        assert d.p_value is not None and d.se is not None and d.mde_relative is not None
        p_user[i] = d.p_value
        words[verdict(d)] += 1
        ses.append(d.se)
        mdes.append(d.mde_relative)
        predicted.append(power(true_diff, d.se))
        old = two_proportion_ztest(int(xc.sum()), int(yc.sum()), int(xt.sum()), int(yt.sum()))
        p_imp[i] = 1.0 if old.p_value is None else old.p_value
    hits_user, hits_imp = int((p_user < ALPHA).sum()), int((p_imp < ALPHA).sum())
    ci_user, ci_imp = wilson_interval(hits_user, n), wilson_interval(hits_imp, n)
    outcome = Outcome(
        experiments=n,
        significant_user_level=hits_user / n,
        significant_per_impression=hits_imp / n,
        user_level_ci=(ci_user.low or 0.0, ci_user.high or 0.0),
        per_impression_ci=(ci_imp.low or 0.0, ci_imp.high or 0.0),
        predicted_power=float(np.mean(predicted)),
        mean_se=float(np.mean(ses)),
        mean_mde_relative=float(np.mean(mdes)),
        verdicts=words,
    )
    return outcome, p_user, p_imp


def plot(path: Path, p_user: np.ndarray, p_imp: np.ndarray, curve: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0, 1, 21)
    left.hist(p_imp, bins=bins, alpha=0.6, label="per impression (old)", color="tab:red")
    left.hist(p_user, bins=bins, alpha=0.6, label="per user, delta method", color="tab:blue")
    left.axhline(len(p_user) / 20, color="k", lw=1, ls="--", label="uniform (calibrated)")
    left.set(title=f"A/A p-values, {len(p_user)} experiments", xlabel="p-value", ylabel="experiments")
    left.legend(fontsize=8)
    lifts = [100 * c["lift"] for c in curve]
    right.plot(lifts, [c["empirical_power"] for c in curve], "o-", label="empirical (share p < 0.05)")
    right.plot(lifts, [c["predicted_power"] for c in curve], "s--", label="predicted from the MDE formula")
    right.plot(
        lifts,
        [c["per_impression_rejects"] for c in curve],
        "^:",
        color="tab:red",
        label="per impression (old)",
    )
    right.axhline(0.05, color="grey", lw=0.8)
    right.axhline(0.8, color="grey", lw=0.8)
    right.set(title="Power vs true relative CTR lift", xlabel="relative lift (%)", ylabel="share significant")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_benchmark(
    experiments: int, power_experiments: int, traffic: Traffic, seed: int, out_dir: Path, command: str
) -> dict[str, object]:
    started = time.perf_counter()
    root = np.random.SeedSequence(seed)
    aa_seq, *curve_seqs = root.spawn(1 + len(LIFTS))
    aa, p_user, p_imp = run_experiments(np.random.default_rng(aa_seq), traffic, experiments, 0.0)
    curve = []
    for lift, seq in zip(LIFTS, curve_seqs, strict=True):
        o, _, _ = run_experiments(np.random.default_rng(seq), traffic, power_experiments, lift)
        curve.append(
            {
                "lift": lift,
                "empirical_power": o.significant_user_level,
                "empirical_ci": o.user_level_ci,
                "predicted_power": o.predicted_power if lift > 0 else ALPHA,
                "per_impression_rejects": o.significant_per_impression,
                "mean_mde_relative": o.mean_mde_relative,
            }
        )
    ab = next(c for c in curve if c["lift"] == 0.10)
    low, high = CALIBRATED
    checks = {
        "aa_user_level_in_[0.03,0.07]": low <= aa.significant_user_level <= high,
        "aa_per_impression_above_0.07": aa.significant_per_impression > high,
        # the prediction lies inside the empirical share's 95% interval (binomial noise only)
        "power_at_+10%_matches_prediction": ab["empirical_ci"][0]
        <= ab["predicted_power"]
        <= ab["empirical_ci"][1],
    }
    payload: dict[str, object] = {
        "command": command,
        "seed": seed,
        "traffic": asdict(traffic),
        "aa": asdict(aa),
        "power_curve": curve,
        "checks": checks,
        "seconds": time.perf_counter() - started,
    }
    png = Path(out_dir) / f"{NAME}.png"
    plot(png, p_user, p_imp, curve)
    payload["plot"] = str(png)
    write_report(NAME, payload, render_markdown(payload, aa, curve, traffic), out_dir)
    return payload


def _ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def render_markdown(
    payload: dict[str, object], aa: Outcome, curve: list[dict[str, object]], t: Traffic
) -> str:
    lines = [
        "# A/B statistics: A/A calibration and power",
        "",
        f"`{payload['command']}` (seed {payload['seed']}, {payload['seconds']:.0f} s). Per arm {t.users} users; "
        f"requests per user 1 + ⌊LogNormal({t.requests_mu}, {t.requests_sigma})⌋ of {t.k} impressions; "
        f"click propensity per user Beta with mean {t.ctr} and a + b = {t.beta_concentration}. "
        "The analysis is the service's own (`app.experiment.ab_stats`).",
        "",
        f"## A/A: {aa.experiments} null experiments, share called significant at α = 0.05",
        "",
        markdown_table(
            ["test", "share significant", "95% interval", "calibrated ([0.03, 0.07])"],
            [
                [
                    "per user, delta method (new)",
                    f"{aa.significant_user_level:.4f}",
                    _ci(aa.user_level_ci),
                    "yes" if CALIBRATED[0] <= aa.significant_user_level <= CALIBRATED[1] else "NO",
                ],
                [
                    "per impression, two-proportion (old)",
                    f"{aa.significant_per_impression:.4f}",
                    _ci(aa.per_impression_ci),
                    "yes" if CALIBRATED[0] <= aa.significant_per_impression <= CALIBRATED[1] else "NO",
                ],
            ],
        ),  # fmt: skip
        "",
        f"Verdicts (new): {aa.verdicts}. Mean relative MDE at this size: {aa.mean_mde_relative:.2%}.",
        "",
        "## Power: known relative CTR lift",
        "",
        markdown_table(
            [
                "true lift",
                "empirical power (new)",
                "95% interval",
                "predicted (MDE formula)",
                "old test rejects",
                "mean MDE",
            ],
            [
                [
                    f"{c['lift']:+.1%}",
                    f"{c['empirical_power']:.4f}",
                    _ci(c["empirical_ci"]),  # type: ignore[arg-type]
                    f"{c['predicted_power']:.4f}",
                    f"{c['per_impression_rejects']:.4f}",
                    f"{c['mean_mde_relative']:.2%}",
                ]
                for c in curve
            ],
        ),  # fmt: skip
        "",
        f"Checks: {payload['checks']}",
        "",
        f"![A/A p-values and power]({NAME}.png)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab_calibration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--experiments", type=int, default=2000, help="A/A experiments (at least 1000)")
    parser.add_argument(
        "--power-experiments", type=int, default=1000, help="experiments per lift of the power curve"
    )
    parser.add_argument("--users", type=int, default=Traffic.users, help="users per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.ab_calibration", *(sys.argv[1:] if argv is None else argv)])
    payload = run_benchmark(
        args.experiments, args.power_experiments, Traffic(users=args.users), args.seed, args.out, command
    )
    print((Path(args.out) / f"{NAME}.md").read_text())
    checks = payload["checks"]
    return 0 if all(checks.values()) else 1  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
