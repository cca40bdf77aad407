"""The students a run trains, each trained the same way: the plan (distilled, scratch, swept
temperatures, in the order the soft labels need them) and one student's stage (from the version's
weights when warm, calibrated, its record written). training/pipeline.py's `train_students` runs the
plan; training/schedule/side.py runs the scratch student alone, beside the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import PipelineConfig
from training.data.split import training_split
from training.schedule.budget import stage_seconds
from training.student.calibrate import calibrate_fit
from training.student.distill import fit_student
from training.warm.start import WarmStart, warm_config, warm_student
from training.workdir import save_record

if TYPE_CHECKING:
    from training.data.types import Interactions, Split


def scratch_config(cfg: PipelineConfig) -> PipelineConfig:
    scratch = cfg.model_copy(deep=True)
    scratch.distill.weight_kl = 0.0
    scratch.distill.weight_rank = 0.0
    return scratch


def student_plan(cfg: PipelineConfig) -> list[tuple[str, PipelineConfig, bool, Path]]:
    """The students in training order: (name, stage config, distilled, work folder). The scratch
    student comes first when the soft labels need it (`teacher+scratch`)."""
    work = Path(cfg.work_dir)
    ensemble = cfg.distill.soft_labels_from == "teacher+scratch"
    plan: list[tuple[str, PipelineConfig, bool, Path]] = [("student", cfg, True, work)]
    if cfg.distill.train_scratch:
        plan.insert(0 if ensemble else 1, ("scratch", scratch_config(cfg), False, work))
    for temperature in cfg.distill.sweep_temperatures:
        swept = cfg.model_copy(deep=True)
        swept.distill.temperature = temperature
        name = f"sweep/T={temperature:g}"
        plan.append((name, swept, True, work / name))
    return plan


def train_one_student(
    name: str,
    stage_cfg: PipelineConfig,
    distilled: bool,
    stage_work: Path,
    data: Interactions,
    split: Split,
    labels: Any,
    progress: bool,
    warm: WarmStart | None,
    record_cfg: PipelineConfig,
) -> Any:
    """One student of the plan on the training split: from the version's weights when warm (the
    distilled and the scratch student), calibrated, its record written."""
    init = trained = None
    if warm is not None and name in ("student", "scratch"):
        init = warm_student(warm, name, data.catalog, stage_cfg)
        if init is not None and stage_cfg.warm.replay < 1:  # the version's log is read only to replay
            trained = warm.trained
    fit = fit_student(
        split, warm_config(stage_cfg) if init is not None else stage_cfg, labels if distilled else None,
        stage_work, progress=progress, init=init, trained=trained,
    )  # fmt: skip
    if stage_cfg.student.popularity_penalties:
        calibrate_fit(fit, split, stage_cfg)
    save_record(record_cfg, name, fit, data.fingerprint)
    return fit


def train_scratch(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    progress: bool = True,
    warm: WarmStart | None = None,
    max_seconds: float | None = None,
) -> Any:
    """The scratch student alone (what training/schedule/side.py runs beside the teacher), capped at `max_seconds`."""
    stage_cfg = scratch_config(cfg)
    stage_cfg.student.max_train_seconds = stage_seconds(stage_cfg.student.max_train_seconds, max_seconds)
    return train_one_student(
        "scratch", stage_cfg, False, Path(cfg.work_dir), data, training_split(cfg, split), None, progress,
        warm, cfg,
    )  # fmt: skip
