"""The served version's student ranked on a new holdout: run as served (ONNX), it reproduces the
figure its own report gives on its own holdout, and an item it does not know is its miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config_file import load_config
from training.evaluate.served import compact_histories, served_metrics, served_score_fn
from training.pipeline import load_data, run_pipeline

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"


def test_compact_histories_leaves_out_the_unknown_items_keeping_the_order() -> None:
    histories = np.array([[5, 1, 7], [9, 9, 2], [4, 3, 8]])
    keep = np.array([[True, False, True], [False, False, True], [False, False, False]])
    assert compact_histories(histories, keep, pad=0).tolist() == [[0, 5, 7], [0, 0, 2], [0, 0, 0]]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    cfg = load_config(
        TINY, [f"models_dir={root / 'models'}", f"work_dir={root / 'work'}", "eval.peers=['popularity']"]
    )
    result = run_pipeline(cfg, progress=False)
    assert result is not None
    return cfg, result


def test_the_served_student_reproduces_its_own_reports_figure(published) -> None:
    cfg, result = published
    data, split = load_data(cfg)
    served = served_metrics(result.version_dir, cfg, data, split)
    reported = result.metrics["test"]["student"]
    assert served["version"] == result.version_dir.name and served["unknown_test_items"] == 0
    for metric in ("ndcg@10", "hr@10", "recall@50"):
        assert served["student"][metric] == pytest.approx(reported[metric], abs=1e-6)


def test_an_item_the_served_version_does_not_know_scores_minus_infinity(published) -> None:
    _, result = published
    known = np.load(result.version_dir / "items.npy").astype(str)
    catalogue = np.array([known[2], "brand-new", known[0]])  # the new catalogue's order
    score, length = served_score_fn(result.version_dir, catalogue)
    history = np.full((1, length), 3)  # the pad of a 3-item catalogue
    history[0, -1] = 1  # the unknown item: left out of the query
    scores = score(np.array([0]), history)
    assert np.isneginf(scores[0, 1]) and np.isfinite(scores[0, [0, 2]]).all()
    empty = score(np.array([0]), np.full((1, length), 3))
    assert np.array_equal(scores, empty)  # the unknown item changed nothing
