"""Popularity calibration of a trained student: score - penalty * log(1 + train count), chosen on validation.

Why: on sparse shop logs the students' top-10 lists crowd onto the bestsellers. On Amazon Beauty
and Sports (seed 0, configs/shop.toml) the distilled student's test coverage@10 was 0.30 and 0.10
against the teacher's 0.59 and 0.18. A log-popularity penalty is the classic correction, and it
cost nothing there: validation NDCG@10 stayed within noise up to penalty 0.5 while test coverage
rose to 0.47 and 0.20 (and test NDCG@10 rose slightly, 0.0543 -> 0.0549 and 0.0304 -> 0.0318).
The teacher is left alone: on Sports no penalty raised its validation NDCG@10 (0.0360 at 0,
0.0358 at 0.1, 0.0312 at 0.5), and it is the reference the students are compared with.

The penalty is chosen per model on the validation users the model early-stopped on, by the
one-standard-error rule (Hastie, Tibshirani & Friedman, ESL 7.10): the largest penalty whose mean
validation NDCG@10 is within one standard error of the best one. Penalties the data cannot tell
apart from the best are not worse, and among them the least popularity-bound list wins. A penalty
of 0 is always a candidate, so a model whose NDCG a penalty hurts stays as it was trained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import PipelineConfig
from training.data.split import validation_split
from training.data.types import Split
from training.evaluate.ranking import coverage, ndcg_gains, rank_targets, summarize
from training.evaluate.scoring import student_score_fn
from training.student.model import MLPStudent, student_checkpoint
from training.workdir import save_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """What was tried and what was chosen, for the fit record and the report."""

    penalties: list[float]
    valid_ndcg: list[float]  # mean validation NDCG@k per penalty
    valid_coverage: list[float]
    standard_error: float  # of the best penalty's mean NDCG@k
    chosen: float
    metrics: dict[str, float]  # the calibrated model's validation metrics (ranking.summarize)

    def as_record(self) -> dict[str, object]:
        return {
            "rule": "one-standard-error",
            "penalties": self.penalties,
            "valid_ndcg": self.valid_ndcg,
            "valid_coverage": self.valid_coverage,
            "standard_error": self.standard_error,
            "chosen": self.chosen,
        }


def popularity_bias(split: Split, penalty: float) -> torch.Tensor:
    """float32 [n_items]: -penalty * log(1 + the item's train interactions)."""
    return torch.from_numpy((-penalty * np.log1p(split.item_popularity())).astype(np.float32))


def one_standard_error_choice(penalties: Sequence[float], gains: np.ndarray) -> tuple[int, float]:
    """(index of the chosen penalty, the standard error) from per-user NDCG `gains` [P, U].

    The largest penalty whose mean is at least the best mean minus the best one's standard error.
    """
    means = gains.mean(axis=1)
    best = int(np.argmax(means))
    se = float(gains[best].std(ddof=1) / np.sqrt(gains.shape[1])) if gains.shape[1] > 1 else 0.0
    tied = [i for i in range(len(penalties)) if means[i] >= means[best] - se]
    return max(tied, key=lambda i: penalties[i]), se


def calibrate_popularity(
    model: MLPStudent, split: Split, penalties: Sequence[float], k: int = 10, recall_k: int = 50
) -> Calibration:
    """Choose the penalty on `split`'s validation users and leave `model` calibrated with it."""
    grid = sorted({0.0, *map(float, penalties)})
    ranked, gains, covers = [], [], []
    for penalty in grid:
        model.calibrate(popularity_bias(split, penalty) if penalty else None)
        ranks, top = rank_targets(student_score_fn(model), split, "valid", model.history_len, k)
        ranked.append((ranks, top))
        gains.append(ndcg_gains(ranks, k))
        covers.append(coverage(top, split.n_items))
    matrix = np.stack(gains)
    chosen, se = one_standard_error_choice(grid, matrix)
    model.calibrate(popularity_bias(split, grid[chosen]) if grid[chosen] else None)
    result = Calibration(
        penalties=grid,
        valid_ndcg=[float(g) for g in matrix.mean(axis=1)],
        valid_coverage=covers,
        standard_error=se,
        chosen=grid[chosen],
        metrics=summarize(*ranked[chosen], split.n_items, k, recall_k),
    )
    log.info(
        "popularity penalty %g (one-SE rule over %s): valid ndcg@%d %.4f, coverage@%d %.3f (penalty 0: %.4f, %.3f)",
        result.chosen, grid, k, result.valid_ndcg[chosen], k, covers[chosen], result.valid_ndcg[0], covers[0],
    )  # fmt: skip
    return result


def calibrate_fit(fit: Any, split: Split, cfg: PipelineConfig) -> None:
    """In place: the popularity penalty chosen on `split`'s validation users (training/student/calibrate.py),
    saved into the fit's checkpoint; its validation metrics become the calibrated model's."""
    sc, e = cfg.student, cfg.eval
    vsplit = validation_split(split, sc.valid_max_users, cfg.seed)  # the users early stopping read
    result = calibrate_popularity(fit.model, vsplit, sc.popularity_penalties, e.k, e.recall_k)
    save_checkpoint(student_checkpoint(fit.model), Path(fit.checkpoint))
    fit.valid_metrics = result.metrics
    fit.calibration = result.as_record()
