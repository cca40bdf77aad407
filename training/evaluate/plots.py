"""The report's plots (PNG, matplotlib's Agg backend): the models' test metrics side by side, teacher
vs student scores, and the student's quality over a temperature sweep.

Also the order models are shown in, which the report's tables share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ORDER = ("teacher", "teacher+scratch", "student", "scratch", "als", "popularity")
PLOT_METRICS = ("hr@{k}", "ndcg@{k}", "recall@{rk}", "mrr", "coverage@{k}")


def model_names(metrics: Mapping[str, Any]) -> list[str]:
    """The models of `metrics` in MODEL_ORDER, then any other in its own order."""
    return [n for n in MODEL_ORDER if n in metrics] + [n for n in metrics if n not in MODEL_ORDER]


def plot_metric_bars(metrics: Mapping[str, Mapping[str, float]], k: int, recall_k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = model_names(metrics)
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
