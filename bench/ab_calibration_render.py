"""bench/ab_calibration.py's report: the Markdown tables and the four-panel plot (false positives by
number of looks, power, CUPED's variance reduction, one experiment's intervals look by look)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import markdown_table


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _share(s: dict[str, Any]) -> str:
    return f"{s['share']:.2%} [{s['ci'][0]:.2%}, {s['ci'][1]:.2%}]"


def render_markdown(p: dict[str, Any]) -> str:
    t = p["traffic"]
    check = p["issue_check"]
    lines = [
        "# A/B statistics read at every look: false positives, power, CUPED",
        "",
        f"`{p['command']}` (seed {p['seed']}, {p['seconds']:.0f} s). Per arm {t['users']:,} users at the last look; "
        f"requests per user and period 1 + Poisson(a), activity a ~ LogNormal({t['requests_mu']}, {t['requests_sigma']}), "
        f"of {t['k']} impressions each; "
        f"click propensity per user Beta with mean {t['ctr']} and a + b = {t['beta_concentration']}; "
        f"{t['pre_share']:.0%} of users with a pre-period (same propensity, log-normal drift σ {t['drift_sigma']}). "
        "The analysis is the service's own (`app.experiment.ab_stats`, `app.experiment.cuped`); an experiment is "
        "called at the first look whose verdict is better or worse. Shares with their Wilson 95% interval.",
        "",
        f"## A/A: share of null experiments ever called (α = {p['alpha']}; bound α + sampling error = "
        f"{p['alpha_bound']:.2%})",
        "",
        markdown_table(
            [
                "looks",
                "always-valid (the verdict)",
                "always-valid + CUPED",
                "fixed-horizon read at every look",
            ],
            [
                [r["looks"], _share(r["always_valid"]), _share(r["cuped"]), _share(r["fixed_horizon"])]
                for r in p["aa"]
            ],
        ),
        "",
        "## Power: true relative CTR lift, same final sample",
        "",
        markdown_table(
            [
                "true lift",
                f"always-valid, {p['power'][0]['always_valid']['experiments']} exps, 20 looks",
                "always-valid + CUPED, 20 looks",
                "always-valid, one look at the end",
                "fixed-horizon, one look at the end",
                "median share of users at the stop",
                "wrong direction",
            ],
            [
                [
                    f"+{r['lift']:.0%}",
                    _share(r["always_valid"]),
                    _share(r["cuped"]),
                    _share(r["always_valid_once"]),
                    _share(r["fixed_horizon_once"]),
                    _pct(r["median_share_of_users_at_stop"]),
                    r["wrong_direction"],
                ]
                for r in p["power"]
            ],
        ),
        "",
        "The always-valid verdict pays for being readable at every look with a wider interval: at one look "
        "at the end it finds less than the fixed-horizon test, which is only right when read once.",
        "",
        "## CUPED",
        "",
        f"Variance of the difference reduced by {p['cuped']['variance_reduction_mean']:.1%} on average "
        f"(p10–p90 {p['cuped']['variance_reduction_p10_p90'][0]:.1%}–{p['cuped']['variance_reduction_p10_p90'][1]:.1%}) "
        f"over {p['cuped']['experiments']} experiments; pre/post correlation of the users' CTR "
        f"{p['cuped']['pre_post_ctr_correlation']:.2f} (users with a pre-period).",
        "",
        "## The issue's check (through `ratio_estimate`, `ratio_difference`, `verdict`)",
        "",
        markdown_table(
            ["check", "measured", "target"],
            [
                [
                    f"null, {check['null_users']} users per arm, {check['looks']} looks: ever called",
                    _share(check["false_positives"]),
                    "≤ 6.5%",
                ],
                [
                    f"+20% lift, {check['lift_users']:,} users per arm, {check['looks']} looks: found",
                    _share(check["found_plus_20"]),
                    "≥ 70%",
                ],
            ],
        ),
        "",
        f"Checks: {p['checks']}",
        "",
        "![false positives, power, CUPED, intervals look by look](ab_calibration.png)",
    ]
    return "\n".join(lines)


def plot(path: Path, p: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((fp, pw), (cu, cs)) = plt.subplots(2, 2, figsize=(12, 8.5))
    looks = [r["looks"] for r in p["aa"]]
    for key, label, style in (
        ("fixed_horizon", "fixed-horizon read at every look", "o-"),
        ("always_valid", "always-valid (the verdict)", "s-"),
        ("cuped", "always-valid + CUPED", "^--"),
    ):
        fp.plot(looks, [100 * r[key]["share"] for r in p["aa"]], style, label=label)
    fp.axhline(100 * p["alpha"], color="k", lw=1, ls=":", label="α = 5%")
    fp.set(xscale="log", xlabel="looks (log scale)", ylabel="null experiments ever called (%)",
           title="A/A: false positives by number of looks")  # fmt: skip
    fp.legend(fontsize=8)
    keys = ("fixed_horizon_once", "always_valid_once", "always_valid", "cuped")
    labels = ("fixed horizon, once", "always-valid, once", "always-valid, 20 looks", "+ CUPED, 20 looks")
    width = 0.2
    for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
        xs = [j + (i - 1.5) * width for j in range(len(p["power"]))]
        pw.bar(xs, [100 * r[key]["share"] for r in p["power"]], width, label=label)
    pw.set_xticks(range(len(p["power"])), [f"+{r['lift']:.0%} lift" for r in p["power"]])
    pw.set(
        ylabel="experiments that found the lift (%)", ylim=(0, 100), title="Power at the same final sample"
    )
    pw.legend(fontsize=8)
    cu.hist([100 * r for r in p["cuped"]["reductions"]], bins=30, color="tab:green")
    cu.set(xlabel="variance reduction of the difference (%)", ylabel="experiments",
           title=f"CUPED (pre/post CTR correlation {p['cuped']['pre_post_ctr_correlation']:.2f})")  # fmt: skip
    path_rows = [r for r in p["example_path"] if r["low"] is not None]
    users = [r["users"] for r in path_rows]
    cs.fill_between(users, [100 * r["low"] for r in path_rows], [100 * r["high"] for r in path_rows],
                    alpha=0.25, label="always-valid 95% interval")  # fmt: skip
    cs.plot(users, [100 * r["fixed_low"] for r in path_rows], "r:", lw=1, label="fixed-horizon 95% interval")
    cs.plot(users, [100 * r["fixed_high"] for r in path_rows], "r:", lw=1)
    cs.plot(users, [100 * r["lift"] for r in path_rows], "k-", lw=1, label="estimated lift")
    cs.axhline(0, color="grey", lw=0.8)
    cs.axhline(10, color="tab:green", lw=0.8, ls="--", label="true lift +10%")
    cs.set(xlabel="users per arm", ylabel="relative CTR lift (%)", title="One +10% experiment, look by look")
    cs.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
