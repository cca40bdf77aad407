"""core.topk: the one top-k (score desc, ties by lower index) and recall against exact, known answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.topk import GROUP_ROWS, exact_topk, recall_at_k, top_k, top_k_of, top_k_rows_pruned


def test_exact_topk_known_answer_with_ties_by_index() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    scores, idx = exact_topk(np.array([[1.0, 0.0], [0.0, -1.0]], np.float32), items, 3, block=1)
    assert idx.tolist() == [[2, 0, 3], [0, 2, 3]]  # row 1: four items tie at 0 (index order), item 1 is -1
    assert scores.tolist() == [[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_exact_topk_caps_k_at_catalogue_size() -> None:
    items = np.eye(3, dtype=np.float32)
    _, idx = exact_topk(np.array([[0.0, 1.0, 0.5]], np.float32), items, 10)
    assert idx.tolist() == [[1, 2, 0]]


def test_exact_topk_drops_each_querys_exclusions_and_breaks_ties_by_index() -> None:
    items = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0]], np.float32)
    users = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    excludes = [np.zeros(0, np.int64), np.array([1], np.int64), np.array([4, 0], np.int64)]
    _, got = exact_topk(users, items, 3, block=2, excludes=excludes)  # blocks of 2: the third row alone
    assert got.tolist() == [[1, 3, 2], [3, 2, 0], [1, 2, 3]]  # row 2: items 1, 2, 3 all score 0


def test_top_k_rows_and_candidates_agree_on_the_tie_rule() -> None:
    scores = np.array([[0.5, 0.9, 0.9, 0.1, 0.9]], np.float32)
    assert top_k(scores, 3).tolist() == [[1, 2, 4]]
    assert top_k(scores, 10).tolist() == [[1, 2, 4, 0, 3]]  # k larger than the catalogue
    cand = np.array([7, 3, 5, 1], np.int64)
    idx, sc = top_k_of(cand, np.array([0.2, 0.9, 0.9, 0.9], np.float32), 3)
    assert idx.tolist() == [1, 3, 5]  # three tie at 0.9: the lowest ids first
    assert sc.dtype == np.float32 and idx.dtype == np.int64
    idx, _ = top_k_of(cand, np.array([0.2, 0.9, 0.9, 0.9], np.float32), 10)
    assert idx.tolist() == [1, 3, 5, 7]


def test_top_k_of_breaks_a_tie_at_the_kth_place_by_the_lowest_id() -> None:
    cand = np.array([7, 3, 5, 1, 9], np.int64)
    scores = np.array([0.9, 0.5, 0.9, 0.5, 0.5], np.float32)
    assert top_k_of(cand, scores, 3)[0].tolist() == [5, 7, 1]  # 1, 3 and 9 tie for the third place
    assert top_k_of(cand, scores, 4)[0].tolist() == [5, 7, 1, 3]


def test_pruned_rows_known_answer() -> None:
    n = GROUP_ROWS * 20 + 5  # 20 groups of 64 strided items, then 5 items always ranked
    scores = np.zeros((2, n), np.float32)
    scores[0, [17, 37, 1_000, n - 1]] = [3.0, 5.0, 4.0, 6.0]  # 17 and 37: the same group (stride 20)
    scores[1, :] = -np.inf  # row 1: all excluded but three, two of them tied
    scores[1, [400, 12, 900]] = [1.0, 2.0, 1.0]
    (ids0, sc0), (ids1, sc1) = top_k_rows_pruned(scores, 4)
    assert ids0.tolist() == [n - 1, 37, 1_000, 17] and sc0.tolist() == [6.0, 5.0, 4.0, 3.0]
    assert ids1.tolist() == [12, 400, 900, 0] and sc1[-1] == -np.inf  # -inf last, lowest index first


@pytest.mark.parametrize("kind", ["distinct", "few values", "mostly excluded"])
def test_pruned_rows_match_a_full_sort_of_every_row(kind: str) -> None:
    rng = np.random.default_rng(len(kind))
    scores = rng.standard_normal((9, 10_007)).astype(np.float32)
    if kind == "few values":  # thousands of ties, at every place
        scores = rng.integers(0, 6, scores.shape).astype(np.float32)
    if kind == "mostly excluded":
        scores[:, rng.random(scores.shape[1]) < 0.999] = -np.inf
    for k in (1, 7, 30, 100):  # 100: fewer than 4k groups, each row ranked whole
        for row, (ids, sc) in zip(scores, top_k_rows_pruned(scores, k), strict=True):
            full = np.lexsort((np.arange(len(row)), -row))[:k]  # score desc, ties by index
            assert ids.tolist() == full.tolist() and sc.tolist() == row[full].tolist()


def test_recall_at_k_hand_computed() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])  # 2/4 and 4/4
    assert recall_at_k(approx, exact) == pytest.approx(0.75)
    assert recall_at_k([[1, 2]], [[2, 9]]) == pytest.approx(0.5)  # plain lists, as bench/scale.py passes
    with pytest.raises(ValueError, match="rows"):
        recall_at_k(approx[:1], exact)
