"""Offline evaluation and the report published beside the manifest.

Every model (teacher, distilled student, scratch student, and the classic peers: popularity and a
tuned implicit ALS from training/evaluate/peers.py) is ranked over the whole catalog by
training.evaluate.ranking.evaluate, the same way, so the table compares like with like. The teacher-student
agreement uses core.agreement, the functions the service's shadow report uses. The report is
report.json (everything), report.md (one page for people) and PNG plots.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.agreement import agreement
from core.manifest import HISTORY_INPUT, INDICES_OUTPUT, K_INPUT, SCORES_OUTPUT
from training.data.types import Split
from training.evaluate.ranking import ScoreFn, TestHistory, evaluate, padded_histories

if TYPE_CHECKING:
    from core.manifest import ModelCard

log = logging.getLogger(__name__)

MODEL_ORDER = ("teacher", "teacher+scratch", "student", "scratch", "als", "popularity")
PROTOCOLS = {
    "train+valid": "standard leave-one-out (test query = train items + the validation item; "
    "full ranking, seen items excluded)",
    "train": "train-only test query (the validation item is excluded but not in the query)",
}
PLOT_METRICS = ("hr@{k}", "ndcg@{k}", "recall@{rk}", "mrr", "coverage@{k}")


def popularity_score_fn(popularity: np.ndarray) -> ScoreFn:
    """Every user gets the train popularity vector: the baseline any model must beat."""
    row = np.asarray(popularity, dtype=np.float32)[None, :]

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        return np.repeat(row, len(users), axis=0)

    return score


def mean_agreement(student_top: np.ndarray, teacher_top: np.ndarray, k: int) -> dict[str, float | None]:
    """Per-user core.agreement metrics averaged over users (kendall_tau over users where defined).

    None where no user defines the metric (JSON has no NaN).
    """
    rows = [agreement(s.tolist(), t.tolist(), k) for s, t in zip(student_top, teacher_top, strict=True)]
    out: dict[str, float | None] = {}
    for key in ("overlap@k", "rbo", "kendall_tau", "ndcg_vs_teacher"):
        values = [float(v) for r in rows if (v := r[key]) is not None]
        out[key.replace("@k", f"@{k}")] = float(np.mean(values)) if values else None
    out["users"] = float(len(rows))
    return out


def evaluate_models(
    split: Split,
    models: Mapping[str, tuple[ScoreFn, int]],
    k: int,
    recall_k: int,
    batch_size: int,
    stage: str = "test",
    test_history: TestHistory = "train+valid",
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Full-ranking metrics per model and each model's top-k lists (for agreement).

    `models` maps a name to (score_fn, history_len): each model sees the history length it was
    trained with; `test_history` is the test query (training.evaluate.ranking.evaluate).
    """
    metrics: dict[str, dict[str, float]] = {}
    tops: dict[str, np.ndarray] = {}
    for name, (score_fn, history_len) in models.items():
        result = evaluate(
            score_fn, split, stage, history_len, k, recall_k, batch_size,  # type: ignore[arg-type]
            return_topk=True, test_history=test_history,
        )  # fmt: skip
        assert isinstance(result, tuple)  # return_topk=True
        metrics[name], tops[name] = result
        log.info("%s %s: %s", stage, name, {m: round(v, 4) for m, v in metrics[name].items()})
    return metrics, tops


def score_pairs(
    teacher_fn: ScoreFn,
    student_fn: ScoreFn,
    split: Split,
    teacher_len: int,
    student_len: int,
    n_users: int,
    items_per_user: int = 50,
    seed: int = 0,
    test_history: TestHistory = "train+valid",
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student scores of the same (user, item) pairs, for the scatter plot.

    Per sampled test user (its test query, as `test_history` says): the teacher's top-10 items plus
    random items, so both the head (where agreement matters) and the bulk of the catalog show.
    """
    rng = np.random.default_rng(seed)
    if len(split.test_users) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    rows = rng.choice(len(split.test_users), size=min(n_users, len(split.test_users)), replace=False)
    users = split.test_users[rows]
    then = split.valid_items[rows] if test_history == "train+valid" else None
    t = teacher_fn(users, padded_histories(split, users, teacher_len, then))
    s = student_fn(users, padded_histories(split, users, student_len, then))
    top = np.argsort(-t, axis=1)[:, :10]
    rand = rng.integers(0, split.n_items, size=(len(users), items_per_user))
    cols = np.concatenate([top, rand], axis=1)
    return np.take_along_axis(t, cols, 1).ravel(), np.take_along_axis(s, cols, 1).ravel()


# --- reduced-precision item matrix (export.item_precision) -------------------------------------------


def expose_all_scores(path: Path, out: Path) -> None:
    """Copy a topk graph to `out` with its [batch, n_items] scores (the TopK's input) as an output.

    Ranking metrics need every item's score; asking the TopK for k = n_items would sort the whole
    catalog per user. The nodes are the graph's own, so the scores are the ones it ranks by.
    """
    import onnx
    from onnx import TensorProto, helper

    from training.export.graphs import ALL_SCORES

    model = onnx.load(str(path))
    model.graph.output.append(
        helper.make_tensor_value_info(ALL_SCORES, TensorProto.FLOAT, ["batch", "n_items"])
    )
    onnx.save(model, str(out))


def all_scores_fn(session: Any, n_items: int, max_cells: int = 1 << 24) -> ScoreFn:
    """Scores [B, n_items] from a graph made by `expose_all_scores`, at most `max_cells` per run."""
    from training.export.graphs import ALL_SCORES

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        out = np.empty((len(histories), n_items), np.float32)
        step = max(1, max_cells // max(n_items, 1))
        for start in range(0, len(histories), step):
            rows = slice(start, start + step)
            (out[rows],) = session.run([ALL_SCORES], {HISTORY_INPUT: histories[rows], K_INPUT: np.array([1])})
        return out

    return score


def topk_latency(
    sessions: Mapping[str, Any], histories: np.ndarray, k: int, warmup: int = 20
) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per call of each topk graph, batch 1, one row at a time.

    The graphs take turns on every row, so a busy machine slows them alike. CPU time
    (time.process_time) is the steadier figure when other work shares the cores.
    """
    k_feed = np.array([k], np.int64)
    wall: dict[str, list[float]] = {name: [] for name in sessions}
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    for sess in sessions.values():  # first calls allocate and page in the matrix
        for row in histories[:1].repeat(warmup, axis=0):
            sess.run([SCORES_OUTPUT, INDICES_OUTPUT], {HISTORY_INPUT: row[None, :], K_INPUT: k_feed})
    for row in histories:
        feed = {HISTORY_INPUT: row[None, :], K_INPUT: k_feed}
        for name, sess in sessions.items():
            w0, c0 = time.perf_counter(), time.process_time()
            sess.run([SCORES_OUTPUT, INDICES_OUTPUT], feed)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "median_ms": 1e3 * float(np.median(wall[name])) if wall[name] else float("nan"),
            "cpu_median_ms": 1e3 * float(np.median(cpu[name])) if cpu[name] else float("nan"),
            "calls": len(wall[name]),
        }
        for name in sessions
    }


def precision_report(
    split: Split,
    stage: Path,
    card: ModelCard,
    k: int,
    recall_k: int,
    batch_size: int,
    latency_calls: int = 300,
    seed: int = 0,
    test_history: TestHistory = "train+valid",
) -> dict[str, Any]:
    """The published reduced-precision student topk graph against the same graph in float32.

    Both graphs are ranked over the full catalog for the same test users (the float32 one is
    rebuilt from the published user graph and item_vectors .npy, as export builds it), so the
    delta is what the precision costs. Also: top-k overlap between the two, item-matrix bytes in
    the file and after onnxruntime's load-time graph optimisation (float16 is folded back to
    float32 there), file sizes, and median batch-1, one-thread latency of both, measured in this run.
    """
    import onnx
    import onnxruntime

    from training.export.graphs import build_topk_graph, item_matrix_bytes, ort_session, topk_overlap

    stage = Path(stage)
    precision = card.item_precision
    items = np.load(stage / card.item_vectors, allow_pickle=False)
    with tempfile.TemporaryDirectory(prefix="recdistill-precision-") as tmp:
        graphs = {"float32": Path(tmp) / "float32_topk.onnx", "reduced": stage / card.topk.file}
        build_topk_graph(stage / card.user.file, items, graphs["float32"])
        sessions, loaded_bytes = {}, {}
        for name, path in graphs.items():
            optimized = Path(tmp) / f"{name}_optimized.onnx"
            sessions[name] = ort_session(path, optimized_path=optimized)
            loaded_bytes[name] = item_matrix_bytes(onnx.load(str(optimized)))
        file_bytes = {name: path.stat().st_size for name, path in graphs.items()}
        matrix_bytes = {name: item_matrix_bytes(onnx.load(str(path))) for name, path in graphs.items()}
        models = {}
        for name, path in graphs.items():
            expose_all_scores(path, Path(tmp) / f"{name}_all_scores.onnx")
            scorer = all_scores_fn(ort_session(Path(tmp) / f"{name}_all_scores.onnx"), split.n_items)
            models[name] = (scorer, card.history_len)
        metrics, tops = evaluate_models(split, models, k, recall_k, batch_size, test_history=test_history)
        del models  # free their two sessions (each holds the matrix) before timing
        users = np.random.default_rng(seed).permutation(split.test_users)[:latency_calls]
        latency = topk_latency(sessions, padded_histories(split, users, card.history_len), k)
    delta = {m: metrics["reduced"][m] - v for m, v in metrics["float32"].items() if m != "users"}
    overlap = topk_overlap(tops["reduced"], tops["float32"])
    return {
        "precision": precision,
        "test": {"float32": metrics["float32"], "reduced": metrics["reduced"], "delta": delta},
        f"overlap@{k}": float(overlap.mean()) if len(overlap) else None,
        "users": len(overlap),
        "item_matrix_bytes": matrix_bytes,
        "item_matrix_bytes_after_ort_load": loaded_bytes,
        "topk_file_bytes": file_bytes,
        "latency": latency,
        "latency_setup": f"onnxruntime {onnxruntime.__version__} CPU, batch 1, 1 thread, k={k}, "
        f"median over {int(latency['float32']['calls'])} test histories, graphs alternating",
    }


# --- the report -------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table, one row per model, columns in the metrics' own order."""
    names = [n for n in MODEL_ORDER if n in metrics] + [n for n in metrics if n not in MODEL_ORDER]
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
    from training.evaluate.gates import gate_lines

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


def plot_metric_bars(metrics: Mapping[str, Mapping[str, float]], k: int, recall_k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in MODEL_ORDER if n in metrics] + [n for n in metrics if n not in MODEL_ORDER]
    cols = [m.format(k=k, rk=recall_k) for m in PLOT_METRICS]
    x = np.arange(len(cols))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, name in enumerate(names):
        ax.bar(x + i * width, [metrics[name].get(c, 0.0) for c in cols], width, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2, cols)
    ax.set_ylabel("test value")
    ax.set_title("Full-ranking test metrics per model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_scatter(teacher_scores: np.ndarray, student_scores: np.ndarray, path: Path) -> float:
    """Teacher vs student score per (user, item) pair; returns their Pearson correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corr = float(np.corrcoef(teacher_scores, student_scores)[0, 1]) if len(teacher_scores) > 1 else 0.0
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(teacher_scores, student_scores, s=3, alpha=0.3)
    ax.set_xlabel("teacher score (logit)")
    ax.set_ylabel("student score")
    ax.set_title(f"Teacher vs student scores (Pearson r = {corr:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return corr


def plot_sweep(sweep: Sequence[Mapping[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = [row["temperature"] for row in sweep]
    values = [row["metrics"][metric] for row in sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(temps, values, marker="o")
    ax.set_xlabel("distillation temperature")
    ax.set_ylabel(f"student test {metric}")
    ax.set_title("Student quality vs distillation temperature")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
