"""Popularity calibration (training/student/calibrate.py): the rule, the scores, the export and the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.manifest import HISTORY_INPUT, K_INPUT, load_manifest
from tests.fixtures.cycle import cycle_log
from training.config import ConfigError, StudentConfig
from training.config_file import load_config
from training.data.split import leave_last_out, training_split
from training.evaluate.ranking import evaluate, ndcg_gains
from training.evaluate.scoring import student_score_fn
from training.export import parity, version
from training.pipeline import load_data, run_pipeline
from training.student.calibrate import calibrate_popularity, one_standard_error_choice, popularity_bias
from training.student.model import MLPStudent, load_student, student_checkpoint
from training.workdir import save_checkpoint

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"


def _student(n_items: int, seed: int = 0) -> MLPStudent:
    torch.manual_seed(seed)
    return MLPStudent(n_items, StudentConfig(dim=8, history_len=4, hidden=[16])).eval()


def test_ndcg_gains_by_hand() -> None:
    gains = ndcg_gains(np.array([0, 1, 9, 10, 500]), k=10)
    np.testing.assert_allclose(gains, [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0])


def test_the_one_standard_error_rule_takes_the_largest_penalty_tied_with_the_best() -> None:
    gains = np.array(
        [
            [1.0, 0.0, 1.0, 0.0],  # mean 0.5, sd sqrt(1/3): standard error sqrt(1/3) / 2 = 0.2887
            [1.0, 0.0, 0.0, 0.0],  # mean 0.25 >= 0.5 - 0.2887: tied with the best
            [0.0, 0.0, 0.0, 0.0],  # mean 0 < 0.2113: worse
        ]
    )
    chosen, se = one_standard_error_choice([0.0, 0.5, 1.0], gains)
    assert chosen == 1 and se == pytest.approx(np.sqrt(1 / 3) / 2)
    # the best itself is the largest penalty: it is chosen, whatever the smaller ones score
    chosen, _ = one_standard_error_choice([0.0, 0.5, 1.0], gains[::-1])
    assert chosen == 2
    # nothing within one standard error but the best: no penalty
    chosen, se = one_standard_error_choice([0.0, 1.0], np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert chosen == 0 and se == 0.0


def test_a_calibrated_student_scores_minus_penalty_times_log_popularity(tmp_path: Path) -> None:
    split = leave_last_out(cycle_log())
    model = _student(split.n_items)
    history = torch.tensor([[split.n_items, 1, 2, 3], [4, 5, 6, 7]])
    with torch.no_grad():
        raw = model.user_vectors(history) @ model.item_vectors().T
        model.calibrate(popularity_bias(split, 0.5))
        calibrated = model.user_vectors(history) @ model.item_vectors().T
        some = torch.tensor([[0, 3], [7, 9]])
        picked = (model.user_vectors(history)[:, None, :] * model.item_vectors_of(some)).sum(-1)
    expected = raw - 0.5 * torch.log1p(torch.from_numpy(split.item_popularity()).float())
    assert torch.allclose(calibrated, expected, atol=1e-5)
    assert torch.allclose(picked, calibrated.gather(1, some), atol=1e-5)  # lookup = full table
    assert model.item_vectors().shape == (split.n_items, 9)  # one column more: the bias
    with torch.no_grad():
        assert torch.equal(model.uncalibrated().item_vectors(), model.item_emb.weight[: split.n_items])
    save_checkpoint(student_checkpoint(model), tmp_path / "s.pt")
    assert torch.equal(load_student(tmp_path / "s.pt").item_vectors(), model.item_vectors())
    with pytest.raises(ValueError, match="expected \\(20,\\)"):
        model.calibrate(torch.zeros(3))


def test_a_calibrated_student_exports_with_parity(tmp_path: Path) -> None:
    split = leave_last_out(cycle_log())
    model = _student(split.n_items).calibrate(popularity_bias(split, 1.0))
    card = version.export_side(model, "student", tmp_path, opset=17, parameters=1)
    assert card.dim == 9
    hist = np.array([[split.n_items, 1, 2, 3], [4, 5, 6, 7]], np.int64)
    sess = ort.InferenceSession(str(tmp_path / card.topk.file))
    scores, idx = sess.run(None, {HISTORY_INPUT: hist, K_INPUT: np.array([5], np.int64)})
    with torch.no_grad():
        ref = (model.user_vectors(torch.from_numpy(hist)) @ model.item_vectors().T).numpy()
    np.testing.assert_array_equal(idx, np.argsort(-ref, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(ref, idx, 1), atol=1e-5)
    inputs = parity.parity_inputs(hist, np.arange(2), split.n_users, split.n_items, n_rows=200, seed=0)
    assert parity.check_parity(model, "student", card, tmp_path, inputs, k=5, atol=1e-4)["passed"]


def test_calibrate_popularity_leaves_the_model_with_the_rules_choice() -> None:
    split = leave_last_out(cycle_log())
    model = _student(split.n_items)
    result = calibrate_popularity(model, split, [2.0, 0.5])
    assert result.penalties == [0.0, 0.5, 2.0]  # 0 always a candidate, sorted
    best = max(result.valid_ndcg)
    tied = [
        p
        for p, n in zip(result.penalties, result.valid_ndcg, strict=True)
        if n >= best - result.standard_error
    ]
    assert result.chosen == max(tied)
    i = result.penalties.index(result.chosen)
    assert result.metrics == evaluate(student_score_fn(model), split, "valid", model.history_len)
    assert result.metrics["ndcg@10"] == pytest.approx(result.valid_ndcg[i])
    if result.chosen:
        expected = popularity_bias(split, result.chosen)
        assert torch.allclose(model.item_vectors()[:, -1], expected)
    else:
        assert model.score_bias is None


def test_pipeline_calibrates_every_student_and_publishes_the_calibrated_vectors(tmp_path: Path) -> None:
    sets = [f"models_dir={tmp_path / 'models'}", f"work_dir={tmp_path / 'work'}"]
    cfg = load_config(
        TINY, [*sets, "student.popularity_penalties=[0.25, 1.0]", "distill.soft_labels_from=teacher+scratch"]
    )
    result = run_pipeline(cfg, progress=False)
    work = tmp_path / "work"
    for name in ("student", "scratch"):
        saved = json.loads((work / f"{name}.json").read_text())
        record = saved["calibration"]
        assert record["rule"] == "one-standard-error" and record["penalties"] == [0.0, 0.25, 1.0]
        i = record["penalties"].index(record["chosen"])
        assert record["valid_ndcg"][i] >= max(record["valid_ndcg"]) - record["standard_error"]
        assert saved["valid_metrics"]["ndcg@10"] == pytest.approx(record["valid_ndcg"][i])  # as served
    report = json.loads((result.version_dir / "report.json").read_text())
    chosen = json.loads((work / "student.json").read_text())["calibration"]["chosen"]
    assert report["calibration"]["student"]["chosen"] == chosen
    assert "popularity penalty" in (result.version_dir / "report.md").read_text()
    manifest = load_manifest(result.version_dir)
    vectors = np.load(result.version_dir / manifest.student.item_vectors)
    _, split = load_data(cfg)
    base = cfg.student.dim
    if chosen:
        assert vectors.shape[1] == base + 1 == manifest.student.dim
        expected = popularity_bias(training_split(cfg, split), chosen).numpy()
        np.testing.assert_allclose(vectors[:, -1], expected, atol=1e-6)
    else:
        assert vectors.shape[1] == base
    # the sum's soft labels used the scratch student as trained, not calibrated
    scratch = load_student(work / "scratch.pt")
    assert scratch.uncalibrated().item_vectors().shape[1] == base


def test_a_negative_penalty_is_refused() -> None:
    with pytest.raises(ConfigError, match="popularity_penalties"):
        load_config(TINY, ["student.popularity_penalties=[-0.5]"])
