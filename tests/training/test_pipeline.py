"""The whole pipeline on the tiny synthetic shop (configs/tiny.toml), and publish atomicity on real models.

One pipeline run (module fixture, ~15 s) feeds every test: the published version must load, verify,
run in onnxruntime and agree with the metrics it records; a failed parity check on a re-export
must leave models/ exactly as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.manifest import HISTORY_INPUT, K_INPUT, USER_INPUT, load_manifest, read_latest, verify_files
from training.config import PipelineConfig
from training.config_file import load_config
from training.data.split import training_split, validation_split
from training.evaluate.models import evaluate_all
from training.evaluate.peers import implicit_missing
from training.pipeline import PipelineResult, load_data, publish_trained, run_pipeline
from training.trained import load_trained
from training.workdir import StageError

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, PipelineResult]:
    root = tmp_path_factory.mktemp("tiny")
    overrides = [
        f"models_dir={root / 'models'}",
        f"work_dir={root / 'work'}",
        "distill.sweep_temperatures=[1.0, 4.0]",
    ]
    cfg = load_config(TINY, overrides)
    return cfg, run_pipeline(cfg, progress=False)


def test_pipeline_publishes_a_version_that_loads_and_verifies(tiny) -> None:
    cfg, result = tiny
    assert read_latest(cfg.models_dir) == result.version_dir.name
    manifest = load_manifest(result.version_dir)
    verify_files(result.version_dir, manifest)
    assert manifest.dataset.n_users == 300 and manifest.dataset.n_items == 120
    assert manifest.config["teacher"]["dim"] == 16  # the config travels with the model
    assert manifest.student.padding_value == 120 and manifest.teacher.oov_user == 300
    assert manifest.student.dim == 8 and manifest.student.history_len == 10
    assert 0 < manifest.student.parameters < manifest.teacher.parameters
    for side in ("student", "teacher"):
        assert manifest.parity[side]["passed"] and manifest.parity[side]["rows"] >= 1000
        assert manifest.parity[side]["max_abs_score_diff"] <= 1e-4
    assert {"report.json", "report.md", "metrics.png", "scores_scatter.png", "sweep.png"} <= set(
        manifest.report
    )
    assert set(manifest.report) <= set(manifest.files)
    assert not list(Path(cfg.models_dir).glob(".staging-*"))


def test_published_metrics_cover_every_model_and_agreement(tiny) -> None:
    _, result = tiny
    test = result.manifest.metrics["test"]
    peers = {"popularity"} | ({"als"} if implicit_missing() is None else set())  # the report's peers
    assert set(test) == {"teacher", "student", "scratch"} | peers
    for row in test.values():
        assert set(row) == {"hr@10", "ndcg@10", "recall@50", "mrr", "coverage@10", "users"}
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= row["recall@50"] <= 1.0
        assert row["users"] == test["teacher"]["users"] > 0
    agreement = result.manifest.metrics["agreement"]["student"]
    assert 0.0 <= agreement["overlap@10"] <= 1.0 and 0.0 <= agreement["rbo"] <= 1.0
    sweep = result.manifest.metrics["sweep"]
    assert [row["temperature"] for row in sweep] == [1.0, 4.0]
    assert all(0.0 <= row["metrics"]["ndcg@10"] <= 1.0 for row in sweep)
    report = json.loads((result.version_dir / "report.json").read_text())
    assert report["metrics"]["test"] == test  # one set of numbers, in the manifest and the report


def test_published_files_match_the_data(tiny) -> None:
    cfg, result = tiny
    data, split = load_data(cfg)
    out = result.version_dir
    np.testing.assert_array_equal(np.load(out / "items.npy", allow_pickle=False), data.catalog.item_ids)
    assert np.load(out / "users.npy", allow_pickle=False).dtype.kind == "U"
    np.testing.assert_array_equal(np.load(out / "popularity.npy"), split.item_popularity())
    assert result.manifest.seed_scope == "log"
    with np.load(out / "seed_interactions.npz", allow_pickle=False) as z:
        seed_user, seed_item = z["user"], z["item"]
        assert len(seed_user) == len(z["timestamp"]) == len(data) > len(split.train_items)  # the whole log
        assert (np.diff(seed_user) >= 0).all() and "event" not in z.files  # by user; no event column
    ends = np.searchsorted(seed_user, split.test_users, side="right")  # one past each user's last row
    np.testing.assert_array_equal(seed_item[ends - 1], split.test_items)  # the test row ends the history
    np.testing.assert_array_equal(seed_item[ends - 2], split.valid_items)
    with np.load(out / "holdout.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["item"], split.test_items)
        np.testing.assert_array_equal(z["valid_item"], split.valid_items)
        assert str(z["test_history"]) == "train+valid" and z["reported"].all()  # eval.max_users: none
        indptr, query = z["query_indptr"], z["query_item"]
    for row, user in enumerate(split.test_users[:20]):  # the test query: train items, then validation
        expected = [*split.history(int(user)).tolist(), int(split.valid_items[row])]
        assert query[indptr[row] : indptr[row + 1]].tolist() == expected
    assert json.loads((out / "categories.json").read_text()) == list(data.catalog.categories)


def test_published_graphs_run_in_onnxruntime(tiny) -> None:
    _, result = tiny
    m, out = result.manifest, result.version_dir
    hist = np.full((2, m.student.history_len), m.student.padding_value, np.int64)
    hist[0, -3:] = [1, 2, 3]  # row 1 is an empty history: a new visitor
    k = np.array([5], np.int64)
    scores, idx = ort.InferenceSession(str(out / m.student.topk.file)).run(
        None, {HISTORY_INPUT: hist, K_INPUT: k}
    )
    assert idx.shape == (2, 5) and (np.diff(scores, axis=1) <= 0).all()
    items = np.load(out / m.student.item_vectors)
    vec = ort.InferenceSession(str(out / m.student.user.file)).run(None, {HISTORY_INPUT: hist})[0]
    np.testing.assert_allclose(scores, np.take_along_axis(vec @ items.T, idx, 1), atol=1e-4)
    users = np.array([0, m.teacher.oov_user], np.int64)  # a known user and the unknown-user row
    _, tidx = ort.InferenceSession(str(out / m.teacher.topk.file)).run(
        None, {USER_INPUT: users, HISTORY_INPUT: hist, K_INPUT: k}
    )
    assert tidx.shape == (2, 5) and tidx.max() < m.dataset.n_items


def test_failed_parity_on_reexport_leaves_models_untouched(tiny, monkeypatch) -> None:
    """Publish atomicity: the export stage (from work_dir checkpoints) fails at parity -> nothing changes."""
    cfg, result = tiny
    models = Path(cfg.models_dir)
    before = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    latest = (models / "LATEST").read_bytes()
    data, split = load_data(cfg)

    import training.export.parity

    def failing_parity(*args, **kwargs):
        raise training.export.parity.ParityError("forced parity failure")

    monkeypatch.setattr(training.export.parity, "check_parity", failing_parity)
    with pytest.raises(training.export.parity.ParityError, match="forced"):
        publish_trained(cfg, data, split, load_trained(cfg, data))
    assert (models / "LATEST").read_bytes() == latest
    assert {
        p.name: p.stat().st_mtime_ns for p in models.iterdir()
    } == before  # no new version, no staging dir
    verify_files(result.version_dir, load_manifest(result.version_dir))


def test_export_stage_republishes_from_checkpoints(tiny) -> None:
    cfg, result = tiny
    data, split = load_data(cfg)
    again = publish_trained(cfg, data, split, load_trained(cfg, data))
    assert again.version_dir != result.version_dir and read_latest(cfg.models_dir) == again.version_dir.name
    assert again.version_dir.name[:16] >= result.version_dir.name[:16]  # the UTC timestamp part sorts by time
    # Same checkpoints, same data: the same test metrics.
    assert again.manifest.metrics["test"] == result.manifest.metrics["test"]


def test_export_stage_refuses_checkpoints_from_other_data(tiny) -> None:
    cfg, _ = tiny
    other = cfg.model_copy(deep=True)
    other.data.synthetic.n_users = 250
    data, _ = load_data(other)
    with pytest.raises(StageError, match="other data"):
        load_trained(other, data)


def test_eval_max_users_ranks_a_seeded_sample_of_test_users(tiny) -> None:
    """eval.max_users: every model is ranked on the same seeded sample; the report says how many."""
    cfg, result = tiny
    data, split = load_data(cfg)
    capped = cfg.model_copy(deep=True)
    capped.eval.max_users = 25
    evaluation = evaluate_all(capped, data, split, load_trained(cfg, data))
    assert evaluation["test_users"] == 25
    assert {row["users"] for row in evaluation["test"].values()} == {25.0}
    again = evaluate_all(capped, data, split, load_trained(cfg, data))
    assert again["test"] == evaluation["test"]  # same seed, same users, same numbers
    full = json.loads((result.version_dir / "report.json").read_text())
    assert full["test_users"] == len(split.test_users) > 25
    assert f"Ranked for {len(split.test_users)} test users" in (result.version_dir / "report.md").read_text()


def test_training_split_holds_out_only_the_users_early_stopping_reads() -> None:
    cfg = load_config(TINY, ["teacher.valid_max_users=20", "student.valid_max_users=10"])
    data, split = load_data(cfg)
    fit = training_split(cfg, split)
    held = fit.valid_users
    assert len(held) == 20 and set(held) <= set(split.valid_users)
    assert validation_split(fit, 20, cfg.seed).valid_users.tolist() == held.tolist()  # the teacher's sample
    assert set(validation_split(fit, 10, cfg.seed).valid_users) <= set(held)  # the student's, inside it
    assert len(fit.train_items) == len(split.train_items) + len(split.valid_users) - 20
    row = {int(u): i for i, u in enumerate(split.valid_users)}
    for u in split.valid_users[:50]:
        expected = split.history(u).tolist() + (
            [] if u in set(held) else [int(split.valid_items[row[int(u)]])]
        )
        assert fit.history(u).tolist() == expected
    off = load_config(TINY, ["teacher.valid_max_users=20", "eval.train_on_valid=false"])
    assert training_split(off, split) is split
    everyone = load_config(TINY, [])  # the default sample covers every tiny user: nothing to add
    assert training_split(everyone, split) is split
