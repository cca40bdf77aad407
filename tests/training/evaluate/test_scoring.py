"""training/evaluate/scoring.py: a model's scores of every item, the way every model is ranked."""

from __future__ import annotations

import numpy as np

from training.evaluate.scoring import popularity_score_fn


def test_popularity_scores_every_user_the_same_way() -> None:
    score = popularity_score_fn(np.array([3.0, 1.0, 2.0]))
    out = score(np.array([0, 1]), np.zeros((2, 4), np.int64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[3, 1, 2], [3, 1, 2]])
