"""training/student/soft_labels.py: the teacher's top-M and scores, the chunked cache and its resume."""

import numpy as np
import pytest
import torch

import training.student.soft_labels as soft_labels
from training.fit.examples import build_pairs, gather_histories
from training.student.soft_labels import build_soft_labels


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


def _count_chunks(monkeypatch) -> list[int]:
    """The start (`lo`) of every chunk the teacher computes from now on, in order."""
    calls: list[int] = []
    real = soft_labels._teacher_chunk

    def counting(*args, **kw):
        calls.append(args[3])  # lo
        return real(*args, **kw)

    monkeypatch.setattr(soft_labels, "_teacher_chunk", counting)
    return calls


def test_soft_label_cache_hit_and_resume(small_teacher, tmp_path, monkeypatch):
    teacher, split, cfg = small_teacher
    monkeypatch.setattr(soft_labels, "CHUNK_PAIRS", 100)  # 480 pairs -> 5 chunks
    calls = _count_chunks(monkeypatch)
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


def test_shares_split_the_chunks_and_the_labels_read_back_are_those_of_one_run(
    small_teacher, tmp_path, monkeypatch
):
    """Two processes (training/schedule/side.py) each compute one share; the call after them computes no chunk
    and returns exactly the labels one process computes alone."""
    teacher, split, cfg = small_teacher
    monkeypatch.setattr(soft_labels, "CHUNK_PAIRS", 100)  # 480 pairs -> 5 chunks
    alone = build_soft_labels(teacher, split, cfg, tmp_path / "alone", "b" * 64, progress=False)
    calls = _count_chunks(monkeypatch)
    shared = tmp_path / "shared"
    assert build_soft_labels(teacher, split, cfg, shared, "b" * 64, progress=False, share=(1, 2)) is None
    assert calls == [100, 300]
    assert build_soft_labels(teacher, split, cfg, shared, "b" * 64, progress=False, share=(0, 2)) is None
    assert calls == [100, 300, 0, 200, 400]
    calls.clear()
    together = build_soft_labels(teacher, split, cfg, shared, "b" * 64, progress=False)
    assert calls == []  # every chunk came from the shares
    np.testing.assert_array_equal(together.candidates, alone.candidates)
    np.testing.assert_array_equal(together.logits, alone.logits)
    np.testing.assert_array_equal(together.user, alone.user)


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


def test_served_queries_are_sorted_and_cut_without_changing_a_vector(small_teacher, monkeypatch):
    """`_final_vectors` sorts served-style queries by length and cuts each block to its longest
    history: every vector equals the full-width query's, in the order asked, for the teacher and for
    the teacher+scratch sum; a model that may read the padding (an imported one) keeps the full width."""
    from tests.fixtures.torch_models import tiny_student
    from training.fit.examples import histories_before
    from training.student.model import MLPStudent
    from training.teacher.ensemble import TeacherPlusStudent

    teacher, split, cfg = small_teacher
    monkeypatch.setattr(soft_labels, "QUERY_BLOCK", 7)
    rng = np.random.default_rng(0)
    user = rng.integers(0, split.n_users, 40).astype(np.int64)
    start, end = split.train_indptr[user], split.train_indptr[user + 1]
    pos = rng.integers(start + 1, end + 1)  # histories of 1 to all train items, in no order
    student = MLPStudent(split.n_items, tiny_student().cfg.model_copy(update={"history_len": 5})).eval()
    for model in (teacher, TeacherPlusStudent(teacher, student)):
        widths: list[int] = []
        real = model.query_vectors

        def spy(users, hist, real=real, widths=widths):
            widths.append(hist.shape[1])
            return real(users, hist)

        monkeypatch.setattr(model, "query_vectors", spy)
        with torch.no_grad():
            got = soft_labels._final_vectors(model, split, user, pos)
            full = torch.from_numpy(histories_before(split, user, pos, model.history_len))
            want = real(torch.from_numpy(user), full)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        assert len(widths) == 6 and widths == sorted(widths) and widths[0] < model.history_len
        monkeypatch.undo()
        monkeypatch.setattr(soft_labels, "QUERY_BLOCK", 7)

    class Opaque:  # an imported teacher: a black box that may read the padding
        pass

    assert soft_labels._ignores_left_padding(teacher) and not soft_labels._ignores_left_padding(Opaque())
