"""Training examples, the soft-label cache, and tiny end-to-end fits that must beat popularity."""

import dataclasses

import numpy as np
import pytest
import torch

import training.student.soft_labels as soft_labels
from training.config import PipelineConfig
from training.data.split import leave_last_out
from training.data.types import Catalog, Interactions, Split
from training.evaluate.ranking import evaluate
from training.evaluate.scoring import student_score_fn, teacher_score_fn
from training.fit.examples import build_pairs, gather_histories, window_tensors
from training.student.distill import fit_student
from training.student.soft_labels import build_soft_labels
from training.teacher.fit import fit_teacher

N_ITEMS = 20


def cycle_log(n_users: int = 60, length: int = 10, seed: int = 0) -> Interactions:
    """Known answer: every user walks the catalog in order (i -> i + 1 mod N) from a random start."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, N_ITEMS, n_users)
    user = np.repeat(np.arange(n_users), length)
    item = (start[:, None] + np.arange(length)[None]) % N_ITEMS
    catalog = Catalog(
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)]),
        category=(np.arange(N_ITEMS) % 3).astype(np.int32),
        categories=["a", "b", "c"],
        price=np.linspace(1, 20, N_ITEMS).astype(np.float32),
    )
    return Interactions(
        name="cycle",
        user=user.astype(np.int64),
        item=item.reshape(-1).astype(np.int64),
        timestamp=np.tile(np.arange(length), n_users).astype(np.int64),
        weight=np.ones(n_users * length, np.float32),
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        catalog=catalog,
    )


def hand_split() -> Split:
    # user 0 train [5, 6, 7], user 1 train [8], user 2 train [1, 2, 3, 4, 0]
    return Split(
        n_users=3,
        n_items=10,
        train_indptr=np.array([0, 3, 4, 9]),
        train_items=np.array([5, 6, 7, 8, 1, 2, 3, 4, 0]),
        train_timestamps=np.arange(9),
        valid_users=np.array([0]),
        valid_items=np.array([9]),
        test_users=np.array([0]),
        test_items=np.array([1]),
    )


def tiny_cfg(**over) -> PipelineConfig:
    cfg = PipelineConfig.model_validate(
        {
            "seed": 0,
            "threads": 1,
            "teacher": {"dim": 16, "n_heads": 2, "history_len": 5, "epochs": 25, "patience": 25, "batch_size": 16,
                        "lr": 5e-3, "dropout": 0.0, "temperature": 0.1},
            "student": {"dim": 8, "history_len": 5, "hidden": [16], "epochs": 25, "patience": 25, "batch_size": 64,
                        "lr": 1e-2, "dropout": 0.0},
            "distill": {"top_m": 5, "n_sampled": 3, "rank_top_k": 3},
        }
    )  # fmt: skip
    return cfg.model_copy(update=over)


def test_pairs_and_windows_by_hand():
    split = hand_split()
    pairs = build_pairs(split, history_len=2)
    # pairs = every train item after the user's first: positions 1, 2 (user 0) and 5..8 (user 2)
    assert pairs.pos.tolist() == [1, 2, 5, 6, 7, 8]
    assert pairs.user.tolist() == [0, 0, 2, 2, 2, 2]
    # counted from each user's last pair backwards, 2 per window
    assert pairs.window.tolist() == [0, 0, 2, 2, 1, 1]
    assert pairs.col.tolist() == [0, 1, 0, 1, 0, 1]
    users, inputs, targets = window_tensors(split, pairs, 2)
    assert users.tolist() == [0, 2, 2]
    assert inputs.tolist() == [[5, 6], [3, 4], [1, 2]]
    assert targets.tolist() == [[6, 7], [4, 0], [2, 3]]
    hist = gather_histories(split, pairs, np.arange(6), history_len=3)
    assert hist.tolist() == [[10, 10, 5], [10, 5, 6], [10, 10, 1], [10, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_fit_teacher_and_students_beat_popularity(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    pop = split.item_popularity()
    pop_ndcg = evaluate(lambda u, h: np.tile(pop, (len(u), 1)), split, "valid", 5)["ndcg@10"]

    teacher = fit_teacher(split, log.catalog, cfg, tmp_path, progress=False)
    assert teacher.checkpoint.is_file() and not teacher.model.training
    t_ndcg = evaluate(teacher_score_fn(teacher.model), split, "valid", 5)["ndcg@10"]
    assert t_ndcg == pytest.approx(teacher.valid_metrics["ndcg@10"])
    assert t_ndcg > pop_ndcg + 0.3
    assert [row["epoch"] for row in teacher.curve] == list(range(1, len(teacher.curve) + 1))

    soft = build_soft_labels(teacher.model, split, cfg, tmp_path / "cache", "k" * 64, progress=False)
    student = fit_student(split, cfg, soft, tmp_path, progress=False)
    scratch = fit_student(split, cfg, None, tmp_path, progress=False)
    assert student.checkpoint.name == "student.pt" and scratch.checkpoint.name == "scratch.pt"
    assert student.valid_metrics["ndcg@10"] > pop_ndcg + 0.3
    assert scratch.valid_metrics["ndcg@10"] > pop_ndcg + 0.3
    got = evaluate(student_score_fn(student.model), split, "valid", 5)["ndcg@10"]
    assert got == pytest.approx(student.valid_metrics["ndcg@10"])


def test_time_budget_stops_training(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.student.max_train_seconds = 0.0  # stop after the first batch, still validated and saved
    result = fit_student(split, cfg, None, tmp_path, progress=False)
    assert len(result.curve) == 1 and result.checkpoint.is_file()


@pytest.fixture
def small_teacher(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.teacher.epochs = 1
    return fit_teacher(split, log.catalog, cfg, tmp_path, progress=False).model, split, cfg


def test_soft_labels_hold_the_teachers_top_m_and_scores(small_teacher, tmp_path):
    teacher, split, cfg = small_teacher
    soft = build_soft_labels(teacher, split, cfg, tmp_path, "a" * 64, progress=False)
    pairs = build_pairs(split, teacher.history_len)
    assert soft.n_pairs == len(pairs.pos) == 60 * 7
    assert soft.candidates.shape == soft.logits.shape == (soft.n_pairs + 60, 5 + 3)
    # row 6 is user 0's last pair (7 pairs each), whose window holds its whole L-item history:
    # its soft labels are exactly what the served teacher scores for that history
    row = 6
    hist = torch.from_numpy(gather_histories(split, pairs, np.array([row]), teacher.history_len))
    with torch.no_grad():
        scores = (teacher.user_vectors(torch.tensor([pairs.user[row]]), hist) @ teacher.item_vectors().T)[0]
    top = torch.topk(scores, 5).indices.numpy()
    assert soft.candidates[row, :5].tolist() == top.tolist()
    cand = soft.candidates[row].astype(np.int64)
    assert soft.logits[row] == pytest.approx(scores.numpy()[cand], abs=1e-4)
    assert (np.diff(soft.logits[:, :5], axis=1) <= 1e-6).all()  # top-M in descending order
    # the extra rows: each user's whole train history (8 items), scored exactly as the service would
    final = soft.n_pairs + 2
    assert soft.user[final] == 2 and soft.pos[final] == split.train_indptr[3]
    hist = torch.from_numpy(split.history(2)[-teacher.history_len :][None])
    with torch.no_grad():
        scores = (teacher.user_vectors(torch.tensor([2]), hist) @ teacher.item_vectors().T)[0]
    assert soft.candidates[final, :5].tolist() == torch.topk(scores, 5).indices.tolist()


def test_soft_label_cache_hit_and_resume(small_teacher, tmp_path, monkeypatch):
    teacher, split, cfg = small_teacher
    monkeypatch.setattr(soft_labels, "CHUNK_PAIRS", 100)  # 480 pairs -> 5 chunks
    calls = []
    real = soft_labels._teacher_chunk

    def counting(*args, **kw):
        calls.append(args[3])  # lo
        return real(*args, **kw)

    monkeypatch.setattr(soft_labels, "_teacher_chunk", counting)
    first = build_soft_labels(teacher, split, cfg, tmp_path, "b" * 64, progress=False)
    assert calls == [0, 100, 200, 300, 400]
    calls.clear()
    second = build_soft_labels(teacher, split, cfg, tmp_path, "b" * 64, progress=False)
    assert calls == []  # a full cache hit recomputes nothing
    assert np.array_equal(first.candidates, second.candidates) and np.array_equal(first.logits, second.logits)
    # an interrupted run: the last two chunks are missing -> only they are computed, identically
    folder = soft_labels.soft_label_dir(cfg, split, tmp_path, "b" * 64)
    for name in ("chunk_000003.npz", "chunk_000004.npz"):
        (folder / name).unlink()
    third = build_soft_labels(teacher, split, cfg, tmp_path, "b" * 64, progress=False)
    assert calls == [300, 400]
    assert np.array_equal(first.candidates, third.candidates) and np.array_equal(first.logits, third.logits)
    # another teacher key does not reuse the cache
    calls.clear()
    build_soft_labels(teacher, split, cfg, tmp_path, "c" * 64, progress=False)
    assert len(calls) == 5


def test_fit_student_distils_on_whole_histories_too(small_teacher, tmp_path):
    teacher, split, cfg = small_teacher
    soft = build_soft_labels(teacher, split, cfg, tmp_path, "e" * 64, progress=False)
    cfg.distill.final_history_repeats = 2
    cfg.distill.rank_loss = "softmax"
    cfg.student.epochs = 1
    result = fit_student(split, cfg, soft, tmp_path, progress=False)
    assert np.isfinite(result.curve[0]["loss"])


def test_fit_student_refuses_soft_labels_of_another_split(small_teacher, tmp_path):
    teacher, split, cfg = small_teacher
    soft = build_soft_labels(teacher, split, cfg, tmp_path, "d" * 64, progress=False)
    short = dataclasses.replace(soft, n_pairs=soft.n_pairs - 1)
    with pytest.raises(ValueError, match="another split"):
        fit_student(split, cfg, short, tmp_path, progress=False)


def test_soft_labels_are_the_same_when_scores_are_formed_in_blocks(small_teacher, tmp_path, monkeypatch):
    """Regression: a 1M-item catalog made one chunk ask for a 32 GB (8192, N) score matrix.

    Scores are now formed a few rows at a time; the candidates and logits must not change.
    """
    teacher, split, cfg = small_teacher
    whole = build_soft_labels(teacher, split, cfg, tmp_path / "whole", "b" * 64, progress=False)
    monkeypatch.setattr(soft_labels, "SCORE_BLOCK_FLOATS", 3 * split.n_items)  # 3 rows per block
    blocked = build_soft_labels(teacher, split, cfg, tmp_path / "blocked", "b" * 64, progress=False)
    np.testing.assert_array_equal(blocked.candidates, whole.candidates)
    # float32 matmuls of different row counts round differently in the last bits (seen: 2e-6)
    np.testing.assert_allclose(blocked.logits, whole.logits, rtol=0, atol=1e-5)
