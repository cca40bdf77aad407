"""The evaluation helpers and the report, on hand-made lists and scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.evaluate.test_ranking import tiny_split
from training.evaluate.models import evaluate_models, mean_agreement, score_pairs
from training.evaluate.report import metrics_table, render_markdown, write_report
from training.evaluate.scoring import popularity_score_fn


def test_popularity_scores_every_user_the_same_way() -> None:
    score = popularity_score_fn(np.array([3.0, 1.0, 2.0]))
    out = score(np.array([0, 1]), np.zeros((2, 4), np.int64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[3, 1, 2], [3, 1, 2]])


def test_mean_agreement_averages_per_user_values() -> None:
    teacher = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    student = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])  # identical for user 0, disjoint for user 1
    out = mean_agreement(student, teacher, k=4)
    assert out["overlap@4"] == 0.5  # (1 + 0) / 2
    assert out["rbo"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert out["ndcg_vs_teacher"] == pytest.approx(0.5)
    assert out["kendall_tau"] == 1.0  # defined for user 0 only (user 1 shares no items)
    assert out["users"] == 2


def test_mean_agreement_is_none_where_no_user_defines_it() -> None:
    out = mean_agreement(np.array([[1, 2]]), np.array([[3, 4]]), k=2)
    assert out["kendall_tau"] is None and out["overlap@2"] == 0.0


def test_evaluate_models_on_the_hand_split() -> None:
    popularity = np.array([6, 5, 4, 3, 2, 1], np.float32)  # the constant scores of test_ranking
    metrics, tops = evaluate_models(
        tiny_split(), {"popularity": (popularity_score_fn(popularity), 1)}, 3, 5, 512
    )
    assert metrics["popularity"]["hr@3"] == 1.0  # see test_ranking: both test items rank first
    np.testing.assert_array_equal(tops["popularity"], [[3, 4, 5], [0, 1, 2]])


def test_score_pairs_returns_matching_teacher_and_student_scores() -> None:
    def teacher(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(6, dtype=np.float32), (len(users), 1))

    def student(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        return 2 * teacher(users, histories)

    t, s = score_pairs(teacher, student, tiny_split(), 3, 2, n_users=5, items_per_user=4)
    assert len(t) == 2 * (6 + 4)  # 2 test users x (the teacher's top-10, capped at 6 items, + 4 random)
    np.testing.assert_array_equal(t[:6], [5, 4, 3, 2, 1, 0])  # the head first, best first
    np.testing.assert_array_equal(s, 2 * t)


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
