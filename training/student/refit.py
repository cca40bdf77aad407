"""`publish.refit`: after evaluation, the published student is fine-tuned on the whole log.

Why: evaluation holds out each user's newest interactions (the test item, and the early-stopping
users' validation item): the newest signal a shop has never reaches the model it serves. Once the
figures are taken, a short fine-tune on every interaction lets the published student learn it:
`publish.refit_epochs` epochs, from the evaluated weights, at `publish.refit_lr_scale` times the
student's lr, distilled as it was trained (soft labels of the same source, now over the whole log). No
holdout is left to stop early on, so the epochs are fixed.

Which figures belong to which weights: every test figure of the report and the manifest is the
evaluated (pre-refit) student's; the published graphs, the parity check and the checkpoints are the
refit student's. The popularity calibration chosen on validation is kept as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import PipelineConfig
from training.data.split import leave_last_out
from training.data.types import Interactions, Split
from training.student.distill import fit_student
from training.student.model import MLPStudent


def whole_log_split(data: Interactions) -> Split:
    """Every interaction a train interaction, each user's oldest first; no user is evaluated."""
    return leave_last_out(data, min_interactions=len(data) + 1)


def refit_config(cfg: PipelineConfig) -> PipelineConfig:
    """One epoch at `publish.refit_lr_scale` x the student's learning rate, no time cap (the loop runs one epoch per call)."""
    out = cfg.model_copy(deep=True)
    out.student.lr = cfg.student.lr * cfg.publish.refit_lr_scale
    out.student.epochs, out.student.patience, out.student.max_train_seconds = 1, 1, None
    return out


def refit_student(
    cfg: PipelineConfig, whole: Split, student: MLPStudent, labels: Any, progress: bool = True
) -> MLPStudent:
    """`student` fine-tuned on `whole` (whole_log_split) for `publish.refit_epochs` epochs with `labels`
    (soft labels over `whole`); its score bias is carried over."""
    stage = refit_config(cfg)
    model = student.uncalibrated()
    for _ in range(cfg.publish.refit_epochs):  # one epoch per fit: with no holdout, the last one is kept
        model = fit_student(
            whole, stage, labels, Path(cfg.work_dir) / "refit", progress=progress, init=model
        ).model
    bias = None if student.score_bias is None else student.score_bias[: student.n_items]
    return model.calibrate(bias).eval()
