"""The report published beside the manifest: report.json (everything), report.md (one page for
people) and the PNG plots (training/evaluate/plots.py).

It tabulates what training/evaluate/models.py measured (every model ranked the same way, agreement
with the teacher), the publish gates, ONNX parity and, with a reduced item precision, what the
precision cost (training/export/item_precision.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate.gates import gate_lines
from training.evaluate.plots import model_names, plot_metric_bars, plot_scatter, plot_sweep

PROTOCOLS = {
    "train+valid": "standard leave-one-out (test query = train items + the validation item; "
    "full ranking, seen items excluded)",
    "train": "train-only test query (the validation item is excluded but not in the query)",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table, one row per model, columns in the metrics' own order."""
    names = model_names(metrics)
    if not names:
        return "(no models evaluated)\n"
    columns = list(dict.fromkeys(c for n in names for c in metrics[n] if c != "users"))  # union, in order
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(_fmt(metrics[name].get(c, float("nan"))) for c in columns) + " |"
        )
    return "\n".join(lines) + "\n"


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: what was trained on, the metrics table, agreement, parity, sizes, timings."""
    ds = report.get("dataset", {})
    out = [
        f"# recdistill report: {report.get('version', '')}",
        "",
        f"Dataset **{ds.get('name')}**: {ds.get('n_users')} users, {ds.get('n_items')} items, "
        f"{ds.get('n_interactions')} interactions (fingerprint `{str(ds.get('fingerprint', ''))[:12]}`).",
        "",
    ]
    out += [f"**{line}**" for line in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    out += [
        "## Test metrics (full ranking, train items and the validation item excluded)",
        "",
        metrics_table(report.get("metrics", {}).get("test", {})),
    ]
    if report.get("test_users") is not None:
        out += [f"Ranked for {report['test_users']} test users (`eval.max_users` caps a seeded sample).", ""]
    if report.get("test_history") is not None:
        out += [f"Test protocol: {PROTOCOLS.get(report['test_history'], report['test_history'])}.", ""]
    if report.get("soft_labels_from") == "teacher+scratch":
        out += [
            "Soft labels: the sum of the teacher's and the scratch student's logits (`distill.soft_labels_from`); "
            "row `teacher+scratch` ranks that sum, the model the student learned from.",
            "",
        ]
    out += calibration_markdown(report.get("calibration"))
    out += peers_markdown(report)
    out += gates_markdown(report.get("gates"))
    if report.get("soft_label_shortlist"):
        sl = report["soft_label_shortlist"]
        out += [
            "Soft labels took the teacher's top-M from a faiss IVF shortlist "
            f"({sl.get('nlist', 0):.0f} cells, nprobe {sl.get('nprobe', 0):.0f}); against exact top-M on "
            f"{sl.get('queries', 0):.0f} served histories: "
            + ", ".join(f"{k} {v:.4f}" for k, v in sl.items() if k.startswith("recall")),
            "",
        ]
    if report.get("agreement"):
        out += ["## Agreement with the teacher (test users, top-k)", "", metrics_table(report["agreement"])]
    params = report.get("parameters", {})
    if params:
        out += ["## Size", ""]
        out += [f"- {name}: {count:,} parameters" for name, count in params.items()]
        if params.get("teacher") and params.get("student"):
            out.append(f"- student / teacher: {params['student'] / params['teacher']:.1%}")
        out.append("")
    if report.get("score_correlation") is not None:
        out += [
            f"Teacher vs student score correlation (Pearson, sampled test users): "
            f"{report['score_correlation']:.3f}",
            "",
        ]
    if report.get("parity"):
        out += ["## ONNX parity (exported graph vs PyTorch)", ""]
    for side, result in report.get("parity", {}).items():
        out.append(
            f"- ONNX parity ({side}): {'passed' if result.get('passed') else 'FAILED'} on {result.get('rows')} rows, "
            f"top-{result.get('k')} identical on {result.get('exact_topk_rows')}, "
            f"max |score diff| {result.get('max_abs_score_diff', float('nan')):.2e} (atol {result.get('atol')})"
            + _reduced_parity_note(result)
        )
    if report.get("parity"):
        out.append("")
    if report.get("precision"):
        out += precision_markdown(report["precision"])
    if report.get("valid"):
        out += ["## Validation metrics at the best epoch", "", metrics_table(report["valid"])]
    if report.get("sweep"):
        out += [
            "## Distillation temperature sweep (student, test)",
            "",
            metrics_table({f"T={row['temperature']:g}": row["metrics"] for row in report["sweep"]}),
        ]
    timings = report.get("seconds", {})
    if timings:
        out += ["## Time", ""] + [f"- {stage}: {sec:.1f} s" for stage, sec in timings.items()] + [""]
    out += [f"![{name}]({name})" for name in report.get("plots", [])]
    return "\n".join(out).rstrip() + "\n"


def calibration_markdown(calibration: Mapping[str, Any] | None) -> list[str]:
    """One line per calibrated student: the popularity penalty its scores carry and why."""
    if not calibration:
        return []
    out = []
    for name, c in calibration.items():
        i = c["penalties"].index(c["chosen"])
        out.append(
            f"- {name}: popularity penalty {c['chosen']:g} (valid ndcg@10 {c['valid_ndcg'][i]:.4f}, "
            f"coverage@10 {c['valid_coverage'][i]:.3f}; without: {c['valid_ndcg'][0]:.4f}, "
            f"{c['valid_coverage'][0]:.3f})"
        )
    return [
        "Scores carry - penalty x log(1 + train count), the largest penalty within one standard error "
        "of the best validation NDCG (`student.popularity_penalties`, training/student/calibrate.py):",
        "",
        *out,
        "",
    ]


def peers_markdown(report: Mapping[str, Any]) -> list[str]:
    """The classic peers: ALS's chosen grid point and what it was fitted on; skipped peers and why."""
    lines = []
    for name, peer in report.get("peers", {}).items():
        chosen = ", ".join(f"{key} {value:g}" for key, value in peer.get("chosen", {}).items())
        fitted = {"train+valid": "train + validation items", "train": "train items"}
        lines.append(
            f"- {name}: tuned on the validation item over {len(peer.get('trials', []))} grid points "
            f"(best {chosen}), tested fitted on {fitted.get(peer.get('fitted_on'), peer.get('fitted_on'))}; "
            f"{peer.get('seconds', 0.0):.1f} s"
        )
    lines += [f"- {name}: skipped ({why})" for name, why in report.get("peers_skipped", {}).items()]
    return ["## Peers", "", *lines, ""] if lines else []


def gates_markdown(gates: Mapping[str, Any] | None) -> list[str]:
    """The publish gates: each gate's line and the overall status (passed, or overridden)."""
    if not gates:
        return []
    return [f"## Publish gates: {gates.get('status')}", "", *(f"- {line}" for line in gate_lines(gates)), ""]


def _reduced_parity_note(result: Mapping[str, Any]) -> str:
    precision = result.get("item_precision")
    if not precision:
        return ""
    k = result.get("k")
    return (
        f"; {precision} item matrix: top-{k} overlap with float32 {_fmt(result.get(f'overlap@{k}'))} "
        f"(minimum {result.get('min_overlap')}), rows outside the {precision} error bound: "
        f"{result.get('mismatched_rows')}"
    )


def _ratio(new: float, old: float) -> str:
    return f"{new / old:.2f}x" if old else "n/a"


def precision_markdown(section: Mapping[str, Any]) -> list[str]:
    """The report.md lines for `precision_report`: float32 vs the reduced graph, side by side."""
    p = section.get("precision", "reduced")
    test = section.get("test", {})
    f32, red, delta = test.get("float32", {}), test.get("reduced", {}), test.get("delta", {})
    lines = [
        f"## Reduced-precision item matrix: {p} vs float32 (student topk graph)",
        "",
        f"Both graphs ranked over the full catalog for the same {section.get('users')} test users.",
        "",
        f"| | float32 | {p} | change |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {_fmt(f32[m])} | {_fmt(red.get(m))} | {delta.get(m, 0.0):+.5f} |" for m in delta]
    overlap_key = next((key for key in section if key.startswith("overlap@")), None)
    if overlap_key:
        lines.append(f"| {overlap_key} with float32 | 1.0000 | {_fmt(section[overlap_key])} | |")
    for label, key in (
        ("item matrix in the file (bytes)", "item_matrix_bytes"),
        ("item matrix after onnxruntime load (bytes)", "item_matrix_bytes_after_ort_load"),
        ("topk graph file (bytes)", "topk_file_bytes"),
    ):
        sizes = section.get(key, {})
        if sizes:
            lines.append(
                f"| {label} | {sizes['float32']:,} | {sizes['reduced']:,} | "
                f"{_ratio(sizes['reduced'], sizes['float32'])} |"
            )
    latency = section.get("latency", {})
    for label, key in (
        ("latency, median ms (wall)", "median_ms"),
        ("latency, median ms (CPU)", "cpu_median_ms"),
    ):
        if latency:
            old, new = latency["float32"][key], latency["reduced"][key]
            lines.append(f"| {label} | {old:.3f} | {new:.3f} | {_ratio(new, old)} |")
    lines += ["", f"Latency: {section.get('latency_setup', '')}."]
    loaded = section.get("item_matrix_bytes_after_ort_load", {})
    if loaded and loaded.get("reduced", 0) >= loaded.get("float32", 1):
        lines.append(
            f"onnxruntime keeps this {p} matrix as float32 once loaded (it folds the conversion at "
            "session start): the file is smaller, the serving process's memory is not."
        )
    return [*lines, ""]


def write_report(
    out_dir: Path,
    report: dict[str, Any],
    k: int,
    recall_k: int,
    scatter: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[str]:
    """Write the plots, report.json and report.md into out_dir; return the file names written."""
    out_dir = Path(out_dir)
    plots: list[str] = []
    test = report.get("metrics", {}).get("test", {})
    if test:
        plot_metric_bars(test, k, recall_k, out_dir / "metrics.png")
        plots.append("metrics.png")
    if scatter is not None and len(scatter[0]):
        report["score_correlation"] = plot_scatter(scatter[0], scatter[1], out_dir / "scores_scatter.png")
        plots.append("scores_scatter.png")
    if report.get("sweep"):
        plot_sweep(report["sweep"], f"ndcg@{k}", out_dir / "sweep.png")
        plots.append("sweep.png")
    report["plots"] = plots
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    return ["report.json", "report.md", *plots]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
