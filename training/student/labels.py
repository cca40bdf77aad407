"""Which soft labels a student learns from (`distill.soft_labels_from`): the teacher's, or the sum of
the teacher's and the scratch student's logits, cached by the models' sha256 (training/student/
soft_labels.py builds them), so rerunning with the same models is free.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import sha256_file
from training.config import PipelineConfig
from training.data.split import training_split
from training.student.soft_labels import build_soft_labels
from training.teacher.ensemble import TeacherPlusStudent
from training.teacher.imported import teacher_source

if TYPE_CHECKING:
    from training.data.types import Split
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher


def soft_labels(
    cfg: PipelineConfig,
    teacher: Teacher,
    split: Split,
    progress: bool = True,
    share: tuple[int, int] | None = None,
) -> Any:
    """Cached by the teacher's sha256 (checkpoint or imported files): rerunning with the same teacher is free.
    `share`: only that share of the chunks, cached (build_soft_labels)."""
    key = teacher_source(cfg, teacher).sha256
    return build_soft_labels(
        teacher, training_split(cfg, split), cfg, Path(cfg.work_dir) / "soft_labels", key, progress, share
    )


def ensemble_soft_labels(
    cfg: PipelineConfig,
    teacher: Teacher,
    scratch: MLPStudent,
    split: Split,
    progress: bool = True,
    share: tuple[int, int] | None = None,
) -> Any:
    """Soft labels from teacher + scratch student (`distill.soft_labels_from = "teacher+scratch"`),
    cached by both models' sha256."""
    scratch_ckpt = Path(cfg.work_dir) / "scratch.pt"
    digest = sha256_file(scratch_ckpt) if scratch_ckpt.is_file() else ""
    key = hashlib.sha256(f"{teacher_source(cfg, teacher).sha256}+{digest}".encode()).hexdigest()
    return build_soft_labels(
        TeacherPlusStudent(teacher, scratch.uncalibrated()), training_split(cfg, split), cfg,
        Path(cfg.work_dir) / "soft_labels", key, progress, share,
    )  # fmt: skip


def distillation_labels(
    cfg: PipelineConfig,
    teacher: Teacher,
    scratch: MLPStudent | None,
    split: Split,
    progress: bool = True,
    share: tuple[int, int] | None = None,
) -> Any:
    """The soft labels `distill.soft_labels_from` names: the teacher's, or teacher + scratch."""
    if cfg.distill.soft_labels_from == "teacher+scratch":
        assert scratch is not None, "teacher+scratch soft labels need the scratch student"
        return ensemble_soft_labels(cfg, teacher, scratch, split, progress, share)
    return soft_labels(cfg, teacher, split, progress, share)
