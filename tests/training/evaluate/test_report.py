"""training/evaluate/report.py and plots.py: report.json, report.md and the plots from a hand-made report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate.plots import model_names
from training.evaluate.report import metrics_table, render_markdown, write_report


def _report() -> dict:
    row = {"hr@10": 0.5, "ndcg@10": 0.25, "recall@50": 0.75, "mrr": 0.2, "coverage@10": 0.1, "users": 4.0}
    return {
        "version": "v1",
        "dataset": {"name": "hand", "n_users": 4, "n_items": 9, "n_interactions": 20, "fingerprint": "abc"},
        "metrics": {"test": {"student": row, "teacher": {**row, "hr@10": 0.75}, "popularity": row}},
        "agreement": {"student": {"overlap@10": 0.6, "rbo": 0.5, "kendall_tau": None, "users": 4.0}},
        "parameters": {"teacher": 1000, "student": 100},
        "parity": {"student": {"passed": True, "rows": 1000, "max_abs_score_diff": 1e-6}},
        "sweep": [
            {"temperature": 1.0, "metrics": row},
            {"temperature": 4.0, "metrics": {**row, "ndcg@10": 0.3}},
        ],
        "seconds": {"teacher": 12.5},
    }


def test_metrics_table_orders_models_teacher_first_and_formats_values() -> None:
    table = metrics_table(_report()["metrics"]["test"]).splitlines()
    assert table[0] == "| model | hr@10 | ndcg@10 | recall@50 | mrr | coverage@10 |"
    assert table[2].startswith("| teacher | 0.7500 |")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["teacher", "student", "popularity"]


def test_render_markdown_mentions_every_section() -> None:
    text = render_markdown(_report())
    assert "# recdistill report: v1" in text
    assert "student / teacher: 10.0%" in text
    assert "ONNX parity (student): passed on 1000 rows" in text
    assert "| T=4 |" in text and "| n/a |" not in text.split("## Size")[0].split("## Agreement")[0]
    assert "n/a" in text  # kendall_tau None is shown as n/a, not as a crash


def test_write_report_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = rng.standard_normal(100)
    files = write_report(tmp_path, _report(), 10, 50, scatter=(t, 0.5 * t))
    assert files == ["report.json", "report.md", "metrics.png", "scores_scatter.png", "sweep.png"]
    for name in files:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["score_correlation"] == pytest.approx(1.0)  # student = 0.5 * teacher
    assert saved["plots"] == files[2:]


def test_models_are_shown_teacher_first_then_any_other_in_its_own_order() -> None:
    metrics = {"zeta": {}, "popularity": {}, "student": {}, "alpha": {}, "teacher": {}, "teacher+scratch": {}}
    assert model_names(metrics) == ["teacher", "teacher+scratch", "student", "popularity", "zeta", "alpha"]
    assert model_names({}) == []
