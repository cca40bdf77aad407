"""The payload (JSON), its Markdown and the NDCG@10 plot, in bench/results/."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.checks import Check
from bench.quality.checks import (
    PROTOCOL_WORDS,
    PUBLISHED_SASREC,
    TEACHER_TARGET,
    compute_checks,
    summarize_models,
    summarize_parameters,
    summarize_seconds,
)
from bench.quality.runs import METRICS, NDCG, REFUSED, SeedRun
from bench.report import fmt_mean_std, markdown_table, write_report

# --- output --------------------------------------------------------------------------------------


def protocol_words(runs: Sequence[SeedRun]) -> str:
    histories = sorted({r.test_history for r in runs if r.test_history})
    if not histories:
        return "unknown (no seed reported its test history)"
    return "; ".join(PROTOCOL_WORDS.get(h, h) for h in histories)


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def build_payload(
    dataset: str, runs: Sequence[SeedRun], checks: Sequence[Check], meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "benchmark": f"quality_{dataset}",
        "dataset": dataset,
        "protocol": protocol_words(runs),
        "meta": meta,
        "models": summarize_models(runs),
        "parameters": summarize_parameters(runs),
        "seconds": summarize_seconds(runs),
        "checks": [c.as_dict() for c in checks],
        "refused_seeds": [r.seed for r in runs if r.status == REFUSED],
        "per_seed": [asdict(r) for r in runs],
        "reference": {"published_sasrec_ndcg@10": PUBLISHED_SASREC.get(dataset)},
    }


def _cell(stat: dict[str, Any] | None, digits: int = 4) -> str:
    return fmt_mean_std(stat, digits) if stat else "–"


def render_markdown(payload: dict[str, Any], plot: str | None = None) -> str:
    dataset, models, meta = payload["dataset"], payload["models"], payload["meta"]
    runs = payload["per_seed"]
    lines = [f"# Quality on {dataset}: the user's pipeline, {len(runs)} seed(s)", ""]
    lines += [f"Protocol: {payload['protocol']}.", ""]
    status = ", ".join(f"seed {r['seed']} {r['status']}" for r in runs)
    lines += [f"Test metrics, mean ± std over the seeds with figures (refused seeds included): {status}.", ""]
    rows = [[m, *(_cell(info["test"].get(k)) for k in METRICS)] for m, info in models.items()]
    lines += [markdown_table(["model", *METRICS], rows), ""]
    spread = [
        [m, *(f"{s['min']:.4f} – {s['max']:.4f}" if (s := info["test"].get(k)) else "–" for k in METRICS)]
        for m, info in models.items()
    ]
    lines += ["Spread (min – max over seeds):", "", markdown_table(["model", *METRICS], spread), ""]
    if reference := payload["reference"].get("published_sasrec_ndcg@10"):
        lines += [f"Published SASRec + sampled softmax on these files: NDCG@10 {reference}.", ""]
    if plot:
        lines += [f"![NDCG@10 per model]({plot})", ""]
    lines += [
        "## Checks",
        "",
        markdown_table(
            ["check", "result", "numbers"], [[c["name"], c["status"], c["detail"]] for c in payload["checks"]]
        ),
        "",
    ]
    lines += ["## Per seed", ""]
    per_seed = []
    for r in runs:
        ndcg = [f"{r['test'][m][NDCG]:.4f}" if NDCG in r["test"].get(m, {}) else "–" for m in models]
        wall = f"{r['wall_seconds'] / 60:.1f}" if r["wall_seconds"] is not None else "–"
        gates = r["gates"].get("status", "–") if r["gates"] else "–"
        per_seed.append([r["seed"], r["status"], *ndcg, wall, gates, r["version"] or r["error"] or "–"])
    header = ["seed", "status", *(f"{m} {NDCG}" for m in models), "wall min", "gates", "version / error"]
    lines += [markdown_table(header, per_seed), ""]
    params = payload["parameters"]
    if params["models"]:
        ratio = params["ratio"].get("teacher/student")
        lines += [
            "## Parameters",
            "",
            markdown_table(
                ["model", "parameters"], [[m, f"{s['mean']:,.0f}"] for m, s in params["models"].items()]
            ),
            "",
        ]
        if ratio:
            lines += [f"Teacher / student: {fmt_mean_std(ratio, 1)}x.", ""]
    seconds = payload["seconds"]
    if seconds["stages"] or seconds["wall"]:
        stage_rows = [[k, _cell(s, 1)] for k, s in seconds["stages"].items()]
        if seconds["wall"]:
            stage_rows.append(["total wall (subprocess)", _cell(seconds["wall"], 1)])
        lines += ["## Stage seconds", "", markdown_table(["stage", "seconds"], stage_rows), ""]
    trained = sorted({m for r in runs for m in r.get("epochs", {})})
    if trained:
        rows = [[r["seed"], *("{} / {}".format(*r["epochs"][m]) if m in r["epochs"] else "–" for m in trained)]
                for r in runs]  # fmt: skip
        lines += [
            "## Epochs (run / best on validation NDCG@10)",
            "",
            markdown_table(["seed", *trained], rows),
            "",
        ]
    calibrated = sorted({m for r in runs for m in r.get("penalties", {})})
    if calibrated:
        rows = [[r["seed"], *(f"{r['penalties'][m]:g}" if m in r["penalties"] else "–" for m in calibrated)]
                for r in runs]  # fmt: skip
        lines += [
            "## Popularity penalty (chosen on validation, one-standard-error rule)",
            "",
            markdown_table(["seed", *calibrated], rows),
            "",
        ]
    warned = [(r["seed"], w) for r in runs for w in r["warnings"]]
    if warned:
        lines += ["## Warnings", "", *(f"- seed {s}: {w}" for s, w in warned), ""]
    lines += ["## Commands", "", "```", meta.get("command", ""), *meta.get("commands", []), "```", ""]
    machine = meta.get("machine", {})
    lines += [
        f"Machine: {machine.get('platform')}, {machine.get('cores')} cores, python "
        f"{machine.get('python')}; up to {meta.get('jobs')} seed(s) in parallel.",
        "",
    ]
    return "\n".join(lines)


def plot_ndcg(payload: dict[str, Any], target: float | None, path: Path) -> Path:
    """Bars of mean NDCG@10 per model (± std), each seed's value as a point, the published SASRec line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m, info in payload["models"].items() if NDCG in info["test"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, model in enumerate(models):
        stat = payload["models"][model]["test"][NDCG]
        ax.bar(i, stat["mean"], yerr=stat["std"], color="#9ecae1", edgecolor="#3182bd", capsize=4)
        n = len(stat["values"])
        offsets = [(j - (n - 1) / 2) * 0.12 for j in range(n)]
        ax.scatter([i + o for o in offsets], stat["values"], color="#08519c", zorder=3, s=18)
    if reference := payload["reference"].get("published_sasrec_ndcg@10"):
        ax.axhline(reference, color="#d62728", linestyle="-", label=f"published SASRec {reference}")
    if target is not None:
        ax.axhline(target, color="#ff7f0e", linestyle="--", label=f"teacher target {target:g}")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{payload['dataset']}: NDCG@10 per model (bars: mean ± std, points: seeds)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(
    dataset: str,
    runs: Sequence[SeedRun],
    meta: dict[str, Any],
    out_dir: Path,
    teacher_target: float | None = None,
) -> tuple[dict[str, Any], tuple[Path, Path, Path]]:
    """Checks, `quality_<dataset>.json`, `.md` and `.png` in out_dir; returns the payload and the paths."""
    name = f"quality_{dataset}"
    checks = compute_checks(runs, dataset, teacher_target)
    payload = build_payload(dataset, runs, checks, meta)
    target = teacher_target if teacher_target is not None else TEACHER_TARGET.get(dataset)
    png = plot_ndcg(payload, target, Path(out_dir) / f"{name}.png")
    json_path, md_path = write_report(name, payload, render_markdown(payload, png.name), Path(out_dir))
    return payload, (json_path, md_path, png)
