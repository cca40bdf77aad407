"""The offline job, stage by stage: data -> teacher -> soft labels -> students -> evaluate -> publish,
and the wall-clock budget shared between them.

Each stage is a short function here over the modules that do the work (training/data/,
training/teacher/, training/student/, training/evaluate/, training/export/), and each can run on its
own (the CLI's subcommands) because everything a later stage needs is kept in `cfg.work_dir`
(training/workdir.py). `run_pipeline` chains the stages in one process without reloading anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import sha256_file
from core.manifest import Manifest, load_manifest
from training import distributed
from training.config import PipelineConfig
from training.data.load import load_interactions
from training.data.split import leave_last_out, training_split
from training.data.types import Interactions, Split
from training.evaluate.gates import check_gates, enforce, gate_lines, quality_warnings
from training.evaluate.models import evaluate_all
from training.export.publish import new_version, publish
from training.export.version import VersionPlan, stage_version
from training.student.calibrate import calibrate_fit
from training.student.distill import fit_student
from training.student.soft_labels import build_soft_labels
from training.teacher.ensemble import TeacherPlusStudent
from training.teacher.fit import fit_teacher
from training.teacher.imported import import_teacher_stage, teacher_is_imported, teacher_source
from training.trained import Trained, trained_from_fits
from training.workdir import save_record, save_refused

if TYPE_CHECKING:
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    version_dir: Path
    manifest: Manifest
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


# --- stages ------------------------------------------------------------------------------------------


def load_data(cfg: PipelineConfig) -> tuple[Interactions, Split]:
    """The configured interactions and their leave-last-out split."""
    data = load_interactions(cfg.data, seed=cfg.seed)
    split = leave_last_out(data, cfg.data.min_interactions)
    log.info(
        "data %s: %d users, %d items, %d interactions, %d evaluated users",
        data.name, data.n_users, data.n_items, len(data), len(split.test_users),
    )  # fmt: skip
    return data, split


def train_teacher(cfg: PipelineConfig, data: Interactions, split: Split, progress: bool = True) -> Any:
    """Train our teacher, or import and check the configured one (training/teacher/imported.py)."""
    if teacher_is_imported(cfg):
        return import_teacher_stage(cfg, data)
    fit = fit_teacher(training_split(cfg, split), data.catalog, cfg, Path(cfg.work_dir), progress=progress)
    save_record(cfg, "teacher", fit, data.fingerprint)
    log.info("teacher: valid %s in %.1f s", fit.valid_metrics, fit.seconds)
    return fit


def soft_labels(cfg: PipelineConfig, teacher: Teacher, split: Split, progress: bool = True) -> Any:
    """Cached by the teacher's sha256 (checkpoint or imported files): rerunning with the same teacher is free."""
    key = teacher_source(cfg, teacher).sha256
    return build_soft_labels(
        teacher, training_split(cfg, split), cfg, Path(cfg.work_dir) / "soft_labels", key, progress=progress
    )


def ensemble_soft_labels(
    cfg: PipelineConfig, teacher: Teacher, scratch: MLPStudent, split: Split, progress: bool = True
) -> Any:
    """Soft labels from teacher + scratch student (`distill.soft_labels_from = "teacher+scratch"`),
    cached by both models' sha256."""
    scratch_ckpt = Path(cfg.work_dir) / "scratch.pt"
    digest = sha256_file(scratch_ckpt) if scratch_ckpt.is_file() else ""
    key = hashlib.sha256(f"{teacher_source(cfg, teacher).sha256}+{digest}".encode()).hexdigest()
    return build_soft_labels(
        TeacherPlusStudent(teacher, scratch.uncalibrated()), training_split(cfg, split), cfg,
        Path(cfg.work_dir) / "soft_labels", key, progress=progress,
    )  # fmt: skip


def _scratch_config(cfg: PipelineConfig) -> PipelineConfig:
    scratch = cfg.model_copy(deep=True)
    scratch.distill.weight_kl = 0.0
    scratch.distill.weight_rank = 0.0
    return scratch


def train_students(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    teacher: Teacher,
    labels: Any = None,
    progress: bool = True,
    pool_seconds: float | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The distilled student, the scratch baseline (when configured) and one student per swept temperature.

    The distilled students learn from `labels` when given, else from the soft labels of
    `distill.soft_labels_from` (cached): the teacher's, or teacher + scratch, for which the scratch
    student is trained first. Their computing time goes to `seconds["soft_labels"]`.

    `pool_seconds` (the pipeline's budget left for students, see `students_pool`) is handed out as
    the students go, by `student_cost`: each student may use its weighted share of what is left when
    it starts, so time one student saves by stopping early goes to the ones after it.
    """
    work = Path(cfg.work_dir)
    full_split, split = split, training_split(cfg, split)
    ensemble = cfg.distill.soft_labels_from == "teacher+scratch"
    plan: list[tuple[str, PipelineConfig, bool, Path]] = [("student", cfg, True, work)]
    if cfg.distill.train_scratch:
        plan.insert(0 if ensemble else 1, ("scratch", _scratch_config(cfg), False, work))
    for temperature in cfg.distill.sweep_temperatures:
        swept = cfg.model_copy(deep=True)
        swept.distill.temperature = temperature
        name = f"sweep/T={temperature:g}"
        plan.append((name, swept, True, work / name))
    fits: dict[str, Any] = {}
    start = time.perf_counter()
    for i, (name, stage_cfg, distilled, stage_work) in enumerate(plan):
        if distilled and labels is None:
            t0 = time.perf_counter()
            labels = (
                ensemble_soft_labels(cfg, teacher, fits["scratch"].model, full_split, progress)
                if ensemble
                else soft_labels(cfg, teacher, full_split, progress)
            )
            if seconds is not None:
                seconds["soft_labels"] = time.perf_counter() - t0
        if pool_seconds is not None:
            left = pool_seconds - (time.perf_counter() - start)
            weights = [student_cost(later) for _, _, later, _ in plan[i:]]
            stage_cfg = stage_cfg.model_copy(deep=True)
            stage_cfg.student.max_train_seconds = _stage_seconds(
                stage_cfg.student.max_train_seconds, left * weights[0] / sum(weights)
            )
            log.info("%s: up to %.0f s of the %.0f s left", name, stage_cfg.student.max_train_seconds, left)
        fits[name] = fit_student(
            split, stage_cfg, labels if distilled else None, stage_work, progress=progress
        )
        if stage_cfg.student.popularity_penalties:
            calibrate_fit(fits[name], split, stage_cfg)
        save_record(cfg, name, fits[name], data.fingerprint)
    for name, fit in fits.items():
        log.info("%s: valid %s in %.1f s", name, fit.valid_metrics, fit.seconds)
    return fits


# A distilled epoch also scores the soft-label candidates (top_m + n_sampled per example) and
# their KL and ranking terms. Converged on Amazon Beauty (configs/shop.toml) the distilled student
# took 874 s against the scratch student's 512 s (bench/results/quality_amazon-beauty_converged.md),
# so a distilled student is given twice a scratch student's share of the students' budget.
DISTILLED_COST = 2.0


def student_cost(distilled: bool) -> float:
    """A student's weight in the students' budget: distilled (soft labels) or scratch."""
    return DISTILLED_COST if distilled else 1.0


# --- evaluate, export, publish -----------------------------------------------------------------------


def check_publish_gates(
    cfg: PipelineConfig, evaluation: dict[str, Any], context: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The publish gates (training.evaluate.gates) and quality warnings on the test metrics, logged.

    A failed gate with `publish.require_gates` raises GateError; the refused version's metrics, gate
    results and `context` (parameter counts, stage seconds) are kept in `work_dir/refused.json`
    (no version folder, LATEST untouched), so a refused run can still be compared.
    """
    test, k = evaluation["test"], cfg.eval.k
    gates = check_gates(test, k, cfg.publish.scratch_tolerance, cfg.publish.require_gates)
    warnings = quality_warnings(test, k)
    for line in warnings:
        log.warning("%s", line)
    for line in gate_lines(gates):
        (log.info if gates["status"] == "passed" else log.warning)("%s", line)
    if gates["status"] == "failed" and distributed.is_main():
        record = {
            "test": test,
            "test_history": evaluation["test_history"],
            "gates": gates,
            "warnings": warnings,
            **(context or {}),
        }
        refused = save_refused(cfg, record)
        log.warning("not published; the refused version's metrics and gates: %s", refused)
    enforce(gates)
    return gates, warnings


def publish_trained(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    trained: Trained,
    seconds: dict[str, float] | None = None,
) -> PipelineResult:
    """Evaluate, check the publish gates, then stage the version (export + parity + report,
    training/export/version.py) and publish it atomically.

    A failed gate (GateError) raises before anything is staged, a parity failure before anything is
    renamed: either way no version, LATEST untouched.
    """
    seconds = dict(seconds or {})
    for name, record in trained.records.items():  # training times, also when published by `export`
        seconds.setdefault(name, float(record.get("seconds", 0.0)))
    t0 = time.perf_counter()
    evaluation = evaluate_all(cfg, data, split, trained)
    peer_seconds = {f"{name}_peer": float(rec["seconds"]) for name, rec in evaluation["peers"].items()}
    seconds["evaluate"] = time.perf_counter() - t0 - sum(peer_seconds.values())  # peers' tuning: apart
    seconds |= peer_seconds
    params = trained.parameter_counts()
    context = {"parameters": params, "seconds": seconds}
    gates, warnings = check_publish_gates(cfg, evaluation, context)  # GateError: nothing staged yet
    config_json = cfg.model_dump(mode="json")
    plan = VersionPlan(
        cfg=cfg, data=data, split=split, trained=trained, evaluation=evaluation, gates=gates,
        warnings=warnings, parameters=params, seconds=seconds,
        version=new_version(data.fingerprint, json.dumps(config_json, sort_keys=True)),
        config_json=config_json, source=teacher_source(cfg, trained.teacher),
    )  # fmt: skip
    version_dir = publish(Path(cfg.models_dir), plan.version, partial(stage_version, plan))
    return PipelineResult(
        version_dir=version_dir, manifest=load_manifest(version_dir), metrics=plan.metrics, seconds=seconds
    )


def _stage_seconds(limit: float | None, budget: float | None) -> float | None:
    """The tighter of a stage's own cap and its share of the budget (None = no limit)."""
    if budget is None:
        return limit
    budget = max(budget, 0.0)
    return budget if limit is None else min(limit, budget)


def budgeted(cfg: PipelineConfig, elapsed: float = 0.0) -> PipelineConfig:
    """cfg with the teacher's max_train_seconds cut to `teacher_budget_share` of `cfg.budget_minutes`."""
    if cfg.budget_minutes is None:
        return cfg
    out = cfg.model_copy(deep=True)
    out.teacher.max_train_seconds = _stage_seconds(
        cfg.teacher.max_train_seconds, cfg.teacher_budget_share * cfg.budget_minutes * 60.0 - elapsed
    )
    return out


def students_pool(cfg: PipelineConfig, elapsed: float) -> float | None:
    """Seconds of `cfg.budget_minutes` left for the students after `elapsed`, less the reserve for
    evaluation and export (None: no budget). `train_students` shares it out."""
    if cfg.budget_minutes is None:
        return None
    return max(cfg.budget_minutes * 60.0 * (1.0 - cfg.budget_reserve_share) - elapsed, 0.0)


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> PipelineResult | None:
    """data -> teacher -> soft labels -> student (+ scratch, sweep) -> evaluate -> export -> publish.

    Under torchrun (training/distributed.py) every rank trains and only rank 0 evaluates and
    publishes: the other ranks return None.
    """
    distributed.set_threads(cfg)
    seconds: dict[str, float] = {}
    start = t0 = time.perf_counter()
    data, split = load_data(cfg)
    seconds["data"] = time.perf_counter() - t0
    teacher_fit = train_teacher(budgeted(cfg, time.perf_counter() - start), data, split, progress)
    seconds["teacher"] = teacher_fit.seconds
    labels = None
    if cfg.distill.soft_labels_from == "teacher":  # teacher+scratch: after the scratch student
        t0 = time.perf_counter()
        labels = soft_labels(cfg, teacher_fit.model, split, progress)
        seconds["soft_labels"] = time.perf_counter() - t0
    pool = students_pool(cfg, time.perf_counter() - start)
    fits = train_students(
        cfg, data, split, teacher_fit.model, labels, progress, pool_seconds=pool, seconds=seconds
    )
    for name, fit in fits.items():
        seconds[name] = fit.seconds
    if not distributed.is_main():  # torchrun: one model, published by rank 0
        return None
    return publish_trained(cfg, data, split, trained_from_fits(teacher_fit, fits), seconds)
