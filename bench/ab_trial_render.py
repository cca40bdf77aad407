"""bench/ab_trial.py's report: the looks as a table and the always-valid interval over the trial
beside the fixed-horizon one (what a team stopping on that would have read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import markdown_table


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2%}"


def render_markdown(p: dict[str, Any]) -> str:
    looks = p["looks"]
    called = [x for x in looks if x["fixed_horizon_verdict"] != "not yet"]
    lines = [
        "# The twin trial: an identical candidate must end with no verdict",
        "",
        f"`{p['command']}` (seed {p['seed']}). Serving `{p['served']}`, candidate `{p['candidate']}` (the same "
        f"files under another name), 50/50 `serving_vs_candidate`, {p['minutes']:g} minutes of mixed traffic at "
        f"about {p['rps']:g} requests/s with clicks and purchases, the report read every 30 s ({len(looks)} looks).",
        "",
        f"**Final verdict: {p['final_verdict']}.** {p['final_summary']}",
        "",
        f"Any look with a verdict: always-valid {'YES' if p['any_look_verdict'] else 'no'}; "
        f"fixed-horizon read the same way {'yes, at ' + str(len(called)) + ' of the looks' if called else 'no'}.",
        "",
        markdown_table(
            ["arm", "users", "requests", "impressions", "clicks"],
            [[arm, c["users"], c["requests"], c["impressions"], c["clicks"]] for arm, c in p["arms"].items()]
            + [
                [
                    "anonymous (outside the comparison)",
                    "–",
                    p["anonymous"]["requests"],
                    p["anonymous"]["impressions"],
                    p["anonymous"]["clicks"],
                ]
            ],  # fmt: skip
        ),
        "",
        "Guardrails: "
        + ", ".join(f"{t['label']} {t['status']}" for t in p["guardrails"]["tests"].values())
        + f"; SRM always-valid p = {p['srm']['always_valid_p']:.3g}.",
        "",
        "Shadow pairs: "
        + "; ".join(
            f"{s['pair']}: {s['compared']} compared, overlap@k {s['overlap']:.3f}, latency ratio p50 "
            f"{s['latency_ratio_p50']:.2f}"
            if s["overlap"] is not None
            else f"{s['pair']}: nothing compared"
            for s in p["shadow_pairs"]
        ),
        "",
        "## Looks",
        "",
        markdown_table(
            [
                "seconds",
                "users (serving / candidate)",
                "verdict",
                "relative lift",
                "always-valid 95%",
                "fixed-horizon 95%",
            ],
            [
                [
                    f"{x['seconds']:.0f}",
                    " / ".join(str(n) for n in x["users"].values()),
                    x["verdict"],
                    _pct(x["lift"]),
                    f"{_pct(x['low'])} to {_pct(x['high'])}",
                    f"{_pct(x['fixed_low'])} to {_pct(x['fixed_high'])}"
                    + (" (called)" if x["fixed_horizon_verdict"] != "not yet" else ""),
                ]
                for x in looks
            ],
        ),
        "",
        "![the interval over the trial](ab_trial.png)",
    ]
    return "\n".join(lines)


def plot(path: Path, p: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    looks = [x for x in p["looks"] if x["low"] is not None]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    minutes = [x["seconds"] / 60 for x in looks]
    ax.fill_between(minutes, [100 * x["low"] for x in looks], [100 * x["high"] for x in looks], alpha=0.25,
                    label="always-valid 95% interval (the verdict's)")  # fmt: skip
    ax.plot(minutes, [100 * x["fixed_low"] for x in looks], "r:", lw=1, label="fixed-horizon 95% interval")
    ax.plot(minutes, [100 * x["fixed_high"] for x in looks], "r:", lw=1)
    ax.plot(minutes, [100 * x["lift"] for x in looks], "k-", lw=1, label="estimated lift")
    ax.axhline(0, color="grey", lw=0.8)
    span = max([abs(100 * x["low"]) for x in looks[len(looks) // 3 :]] + [10]) * 1.5
    ax.set(ylim=(-span, span), xlabel="minutes into the trial", ylabel="candidate vs serving, CTR per user (%)",
           title=f"Identical candidate: final verdict {p['final_verdict']}")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
