"""training.evaluate.ranking against values worked out by hand (comments show the arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.data.types import Split
from training.evaluate.ranking import (
    coverage,
    evaluate,
    exclude_seen,
    hit_rate,
    mrr,
    ndcg,
    padded_histories,
    target_ranks,
    top_k,
)


def tiny_split() -> Split:
    """6 items, 2 users. u0: train [0, 1], valid 2, test 3. u1: train [4], valid 5, test 0."""
    return Split(
        n_users=2,
        n_items=6,
        train_indptr=np.array([0, 2, 3]),
        train_items=np.array([0, 1, 4]),
        train_timestamps=np.array([1, 2, 1]),
        valid_users=np.array([0, 1]),
        valid_items=np.array([2, 5]),
        test_users=np.array([0, 1]),
        test_items=np.array([3, 0]),
    )


def test_padded_histories_left_pads_with_n_items_and_keeps_the_most_recent() -> None:
    split = tiny_split()
    np.testing.assert_array_equal(padded_histories(split, np.array([0, 1]), 3), [[6, 0, 1], [6, 6, 4]])
    np.testing.assert_array_equal(padded_histories(split, np.array([0]), 1), [[1]])  # last item only


def test_exclude_seen_masks_train_items_and_the_extra_item() -> None:
    split = tiny_split()
    scores = np.zeros((2, 6), np.float32)
    exclude_seen(scores, split, np.array([0, 1]), extra=np.array([2, 5]))
    assert np.isneginf(scores).tolist() == [
        [True, True, True, False, False, False],
        [False, False, False, False, True, True],
    ]


def test_target_ranks_count_ties_against_the_model() -> None:
    scores = np.array([[0.1, 0.5, 0.3, 0.9], [1.0, 1.0, 0.0, 2.0], [-np.inf, 0.2, 0.2, 0.2]], np.float32)
    # row 0: target 2 (0.3) is beaten by 0.5 and 0.9 -> 2
    # row 1: target 1 (1.0) ties item 0 and is beaten by 2.0 -> 2 (the tie counts against it)
    # row 2: target 3 ties items 1 and 2; the excluded item (-inf) is below it -> 2
    np.testing.assert_array_equal(target_ranks(scores, np.array([2, 1, 3])), [2, 2, 2])


def test_a_constant_scorer_ranks_no_target_first() -> None:
    """Regression: ranks counted only strictly better items, so a scorer that gives every item the
    same score (a lookup teacher's zero vector for an unknown user) ranked every target first."""
    scores = np.zeros((4, 2000), np.float32)
    ranks = target_ranks(scores, np.array([0, 7, 1000, 1999]))
    np.testing.assert_array_equal(ranks, [1999, 1999, 1999, 1999])  # every other item ties it
    assert (ranks >= 999).all() and hit_rate(ranks, 10) == 0.0


def test_a_nan_target_score_ranks_last() -> None:
    scores = np.array([[0.5, np.nan, 0.1]], np.float32)
    np.testing.assert_array_equal(target_ranks(scores, np.array([1])), [2])


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index() -> None:
    scores = np.array([[0.2, 0.9, 0.9, 0.1, 0.5]], np.float32)
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 2, 4]])
    np.testing.assert_array_equal(top_k(scores, 10), [[1, 2, 4, 0, 3]])  # k larger than the catalog


def test_metric_functions_on_hand_computed_ranks() -> None:
    ranks = np.array([0, 1, 3, 10])
    assert hit_rate(ranks, 10) == 0.75  # 3 of 4 inside the top 10
    assert hit_rate(ranks, 1) == 0.25
    # (1/log2(2) + 1/log2(3) + 1/log2(5) + 0) / 4 = (1 + 0.6309 + 0.4307) / 4
    assert ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert ndcg(ranks, 10) == pytest.approx(0.515402, abs=1e-6)
    assert mrr(np.array([0, 1, 3])) == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)  # 0.58333
    assert coverage(np.array([[0, 1], [1, 2]]), 10) == 0.3  # {0, 1, 2} of 10 items
    for fn in (lambda r: hit_rate(r, 10), lambda r: ndcg(r, 10), mrr):
        assert fn(np.zeros(0, np.int64)) == 0.0  # no users: 0, not NaN


def _constant_scores(seen: list[np.ndarray]):
    """Every user scores items 6, 5, 4, 3, 2, 1 (item 0 best); records the histories it was given."""

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        seen.append(histories.copy())
        return np.tile(np.array([6, 5, 4, 3, 2, 1], np.float32), (len(users), 1))

    return score


def test_evaluate_valid_stage_by_hand() -> None:
    seen: list[np.ndarray] = []
    metrics, top = evaluate(
        _constant_scores(seen), tiny_split(), "valid", 3, k=3, recall_k=5, batch_size=1, return_topk=True
    )
    # u0: items 0, 1 excluded; target 2 is the best of 2..5 -> rank 0.
    # u1: item 4 excluded; target 5 (score 1) is beaten by 0, 1, 2, 3 -> rank 4.
    assert metrics["hr@3"] == 0.5
    assert metrics["ndcg@3"] == 0.5  # (1 + 0) / 2
    assert metrics["recall@5"] == 1.0  # both ranks < 5
    assert metrics["mrr"] == pytest.approx((1 + 1 / 5) / 2)
    np.testing.assert_array_equal(top, [[2, 3, 4], [0, 1, 2]])
    assert metrics["coverage@3"] == pytest.approx(5 / 6)  # items 0..4
    assert metrics["users"] == 2
    np.testing.assert_array_equal(np.concatenate(seen), [[6, 0, 1], [6, 6, 4]])  # one user per batch


def test_evaluate_test_stage_also_excludes_the_validation_item() -> None:
    seen: list[np.ndarray] = []
    metrics, top = evaluate(
        _constant_scores(seen), tiny_split(), "test", 3, k=3, recall_k=5, batch_size=512, return_topk=True
    )
    # u0: 0, 1 (train) and 2 (valid) excluded; target 3 is the best left -> rank 0.
    # u1: 4 (train) and 5 (valid) excluded; target 0 is the best -> rank 0.
    assert metrics["hr@3"] == 1.0 and metrics["mrr"] == 1.0 and metrics["ndcg@3"] == 1.0
    np.testing.assert_array_equal(top, [[3, 4, 5], [0, 1, 2]])
    assert metrics["coverage@3"] == 1.0
    # Standard protocol: the test query is the train items followed by the validation item.
    np.testing.assert_array_equal(seen[0], [[0, 1, 2], [6, 4, 5]])


def test_evaluate_train_only_test_history_keeps_the_validation_item_out_of_the_query() -> None:
    seen: list[np.ndarray] = []
    metrics, _ = evaluate(
        _constant_scores(seen), tiny_split(), "test", 3, k=3, recall_k=5, batch_size=512,
        return_topk=True, test_history="train",
    )  # fmt: skip
    assert metrics["ndcg@3"] == 1.0  # same exclusions, so the same ranks as the standard query
    np.testing.assert_array_equal(seen[0], [[6, 0, 1], [6, 6, 4]])
