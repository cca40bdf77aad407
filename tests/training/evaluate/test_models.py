"""training/evaluate/models.py: agreement with the teacher, every model ranked alike, and the scatter pairs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.evaluate.test_ranking import tiny_split
from training.evaluate.models import evaluate_models, mean_agreement, score_pairs
from training.evaluate.scoring import popularity_score_fn


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
