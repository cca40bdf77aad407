"""Score functions for training.evaluate.ranking.evaluate: a model's scores of every item for a batch of
(user, history) queries. One per kind of model: a teacher (ours or imported, through the Teacher
protocol), a student, and popularity (the baseline every model must beat).
"""

from __future__ import annotations

import numpy as np
import torch

from training.evaluate.ranking import ScoreFn
from training.fit.examples import trim_padding
from training.teacher.protocol import Teacher


def teacher_score_fn(model: Teacher) -> ScoreFn:
    """Scores for training.evaluate.ranking.evaluate: users beyond the table map to the OOV row."""

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            items = model.item_vectors()
            dev = items.device
            u = torch.as_tensor(
                np.where(users < model.n_users, users, model.oov_user), dtype=torch.long, device=dev
            )
            hist = trim_padding(torch.as_tensor(histories, dtype=torch.long, device=dev), model.padding_value)
            vec = model.query_vectors(u if model.takes_user_id else None, hist)
            return (vec.to(dev) @ items.T).cpu().numpy()

    return score


def student_score_fn(model: torch.nn.Module) -> ScoreFn:
    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            dev = next(model.parameters()).device
            vec = model.user_vectors(
                trim_padding(torch.as_tensor(histories, dtype=torch.long, device=dev), model.padding_value)
            )
            return (vec @ model.item_vectors().T).cpu().numpy()

    return score


def popularity_score_fn(popularity: np.ndarray) -> ScoreFn:
    """Every user gets the train popularity vector: the baseline any model must beat."""
    row = np.asarray(popularity, dtype=np.float32)[None, :]

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        return np.repeat(row, len(users), axis=0)

    return score
