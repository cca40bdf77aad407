"""The models a publish needs (`Trained`): taken from the fits just made (`run_pipeline`), or rebuilt
from the checkpoints and records in work_dir (`recdistill export`), checked against the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import PipelineConfig
from training.data.types import Interactions
from training.student.model import count_parameters, load_student
from training.teacher.imported import import_teacher_stage, teacher_is_imported
from training.teacher.two_tower import load_teacher
from training.workdir import StageError, fit_record, load_record

if TYPE_CHECKING:
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher


@dataclass
class Trained:
    """The models a publish needs, and what their training recorded."""

    teacher: Teacher  # ours (training.teacher.two_tower.TwoTowerTeacher) or an imported one
    student: MLPStudent
    scratch: MLPStudent | None = None
    sweep: list[tuple[float, MLPStudent]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> valid_metrics, curve, seconds

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the teacher, the student and (when trained) the scratch student."""
        counts = {"teacher": self.teacher.n_parameters(), "student": count_parameters(self.student)}
        if self.scratch is not None:
            counts["scratch"] = count_parameters(self.scratch)
        return counts


def load_trained_teacher(cfg: PipelineConfig, data: Interactions) -> tuple[Teacher, dict[str, Any]]:
    """The teacher in work_dir, or the imported one (imported again: its checks run again)."""
    if teacher_is_imported(cfg):
        fit = import_teacher_stage(cfg, data)
        return fit.model, fit_record(fit)
    record = load_record(cfg, "teacher", data.fingerprint)
    return load_teacher(Path(record["checkpoint"])), record


def load_trained(cfg: PipelineConfig, data: Interactions) -> Trained:
    """Rebuild every model a publish needs from cfg.work_dir (the `recdistill export` stage)."""
    teacher, teacher_record = load_trained_teacher(cfg, data)
    records = {"teacher": teacher_record, "student": load_record(cfg, "student", data.fingerprint)}
    trained = Trained(
        teacher=teacher, student=load_student(Path(records["student"]["checkpoint"])), records=records
    )
    if cfg.distill.train_scratch:
        records["scratch"] = load_record(cfg, "scratch", data.fingerprint)
        trained.scratch = load_student(Path(records["scratch"]["checkpoint"]))
    for temperature in cfg.distill.sweep_temperatures:
        name = f"sweep/T={temperature:g}"
        records[name] = load_record(cfg, name, data.fingerprint)
        trained.sweep.append((temperature, load_student(Path(records[name]["checkpoint"]))))
    check_shapes(trained, data)
    return trained


def check_shapes(trained: Trained, data: Interactions) -> None:
    """StageError unless every model was trained on this data's users and items: retrain then."""
    if trained.teacher.n_users != data.n_users or trained.teacher.n_items != data.n_items:
        raise StageError(
            f"the teacher was trained on {trained.teacher.n_users} users / {trained.teacher.n_items} items, "
            f"the data has {data.n_users} / {data.n_items}: retrain"
        )
    for model in [trained.student, trained.scratch, *(m for _, m in trained.sweep)]:
        if model is not None and model.n_items != data.n_items:
            raise StageError(
                f"a student was trained on {model.n_items} items, the data has {data.n_items}: retrain"
            )


def trained_from_fits(teacher_fit: Any, fits: dict[str, Any]) -> Trained:
    records = {"teacher": fit_record(teacher_fit)} | {name: fit_record(fit) for name, fit in fits.items()}
    return Trained(
        teacher=teacher_fit.model,
        student=fits["student"].model,
        scratch=fits["scratch"].model if "scratch" in fits else None,
        sweep=[(float(n.split("=", 1)[1]), f.model) for n, f in fits.items() if n.startswith("sweep/")],
        records=records,
    )
