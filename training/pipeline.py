"""The offline job, stage by stage: data -> teacher -> soft labels -> students -> evaluate -> publish,
within the wall-clock budget (training/schedule/budget.py), with the stages the teacher does not feed
in a side process when a core is spare (training/schedule/side.py).

Each stage is a short function here over the modules that do the work (training/data/,
training/teacher/, training/student/, training/evaluate/, training/export/), and each can run on its
own (the CLI's subcommands) because everything a later stage needs is kept in `cfg.work_dir`
(training/workdir.py). `run_pipeline` chains the stages without reloading anything.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.manifest import EventsIn, Manifest, load_manifest
from training import distributed
from training.config import PipelineConfig
from training.data.load import load_interactions
from training.data.split import leave_last_out, training_split
from training.data.types import Interactions, Split
from training.evaluate.gates import check_gates, enforce, gate_lines, quality_warnings
from training.evaluate.models import Ranked, evaluate_all
from training.evaluate.served import served_metrics
from training.export.publish import new_version, publish
from training.export.version import VersionPlan, stage_version
from training.schedule.budget import budgeted, scratch_share, stage_seconds, student_cost, students_pool
from training.schedule.side import SideStages
from training.student.labels import distillation_labels
from training.student.refit import refit_student, whole_log_split
from training.student.stage import student_plan, train_one_student
from training.teacher.fit import fit_teacher
from training.teacher.imported import import_teacher_stage, teacher_is_imported, teacher_source
from training.trained import Trained, trained_from_fits
from training.warm.start import WarmStart, open_warm_start, warm_config, warm_teacher
from training.workdir import save_record, save_refused

if TYPE_CHECKING:
    from training.evaluate.peers import TunedPeer
    from training.teacher.protocol import Teacher

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    version_dir: Path
    manifest: Manifest
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    warm: WarmStart | None = None  # what the run started from (None: trained cold)


@dataclass(frozen=True)
class Publication:
    """How a run publishes. `recdistill pipeline` moves LATEST; a retrain (recdistill/retrain.py)
    leaves it (the new version becomes the candidate), gates the new student against the served
    version's on the new holdout, and records the service's events it took in."""

    set_latest: bool = True
    served: Path | None = None  # the served version's folder: the student_vs_served gate
    events: EventsIn | None = None


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


def train_teacher(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    progress: bool = True,
    warm: WarmStart | None = None,
) -> Any:
    """Train our teacher (from `warm`'s teacher when given, with the `warm` settings), or import and
    check the configured one (training/teacher/imported.py)."""
    if teacher_is_imported(cfg):
        return import_teacher_stage(cfg, data)
    train = training_split(cfg, split)
    init = warm_teacher(warm, train, data.catalog, cfg) if warm is not None else None
    stage = warm_config(cfg) if init is not None else cfg
    fit = fit_teacher(train, data.catalog, stage, Path(cfg.work_dir), progress=progress, init=init)
    save_record(cfg, "teacher", fit, data.fingerprint)
    log.info("teacher: valid %s in %.1f s", fit.valid_metrics, fit.seconds)
    return fit


def train_students(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    teacher: Teacher,
    labels: Any = None,
    progress: bool = True,
    pool_seconds: float | None = None,
    seconds: dict[str, float] | None = None,
    warm: WarmStart | None = None,
    done: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The distilled student, the scratch baseline (when configured) and one student per swept temperature.

    The distilled students learn from `labels` when given, else from the soft labels of
    `distill.soft_labels_from` (cached): the teacher's, or teacher + scratch, for which the scratch
    student is trained first. Their computing time goes to `seconds["soft_labels"]`.

    `pool_seconds` (the pipeline's budget left for students, see `students_pool`) is handed out as
    the students go, by `student_cost`: each student may use its weighted share of what is left when
    it starts, so time one student saves by stopping early goes to the ones after it.

    `warm`: the distilled and the scratch student start from the version's (with the `warm`
    settings); the swept students train cold. `done`: fits already made (the scratch student trained
    beside the teacher, training/schedule/side.py), taken as they are.
    """
    full_split, split = split, training_split(cfg, split)
    ensemble = cfg.distill.soft_labels_from == "teacher+scratch"
    fits: dict[str, Any] = dict(done or {})
    plan = [step for step in student_plan(cfg) if step[0] not in fits]
    start = time.perf_counter()
    for i, (name, stage_cfg, distilled, stage_work) in enumerate(plan):
        if distilled and labels is None:
            t0 = time.perf_counter()
            scratch = fits["scratch"].model if ensemble else None
            labels = distillation_labels(cfg, teacher, scratch, full_split, progress)
            if seconds is not None:
                seconds["soft_labels"] = time.perf_counter() - t0
        if pool_seconds is not None:
            left = pool_seconds - (time.perf_counter() - start)
            weights = [student_cost(later) for _, _, later, _ in plan[i:]]
            stage_cfg = stage_cfg.model_copy(deep=True)
            stage_cfg.student.max_train_seconds = stage_seconds(
                stage_cfg.student.max_train_seconds, left * weights[0] / sum(weights)
            )
            log.info("%s: up to %.0f s of the %.0f s left", name, stage_cfg.student.max_train_seconds, left)
        fits[name] = train_one_student(
            name, stage_cfg, distilled, stage_work, data, split, labels, progress, warm, cfg
        )
    for name, fit in fits.items():
        log.info("%s: valid %s in %.1f s", name, fit.valid_metrics, fit.seconds)
    return fits


# --- evaluate, export, publish -----------------------------------------------------------------------


def check_publish_gates(
    cfg: PipelineConfig, evaluation: dict[str, Any], context: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The publish gates (training.evaluate.gates) and quality warnings on the test metrics, logged.

    A failed gate with `publish.require_gates` raises GateError; the refused version's metrics, gate
    results and `context` (parameter counts, stage seconds) are kept in `work_dir/refused.json`
    (no version folder, LATEST untouched), so a refused run can still be compared.
    """
    test, k, p = evaluation["test"], cfg.eval.k, cfg.publish
    gates = check_gates(
        test, k, p.scratch_tolerance, p.require_gates, evaluation.get("served"), p.served_tolerance
    )
    warnings = quality_warnings(test, k)
    for line in warnings:
        log.warning("%s", line)
    for line in gate_lines(gates):
        (log.info if gates["status"] == "passed" else log.warning)("%s", line)
    if gates["status"] == "failed" and distributed.is_main():
        record = {
            "test": test,
            "test_history": evaluation["test_history"],
            "served": evaluation.get("served"),
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
    publication: Publication = Publication(),
    warm: WarmStart | None = None,
    als: TunedPeer | None = None,
    ranked: Ranked | None = None,
) -> PipelineResult:
    """Evaluate, check the publish gates, then stage the version (export + parity + report,
    training/export/version.py) and publish it atomically (`publication`: LATEST or not, the served
    version to gate against, the events taken in).

    A failed gate (GateError) raises before anything is staged, a parity failure before anything is
    renamed: either way no version, LATEST untouched. `als` (the ALS peer already tuned) and `ranked`
    (the teacher, scratch and soft-label source already ranked) come from training/schedule/side.py; what is
    not given is done here.
    """
    seconds = dict(seconds or {})
    for name, record in trained.records.items():  # training times, also when published by `export`
        seconds.setdefault(name, float(record.get("seconds", 0.0)))
    t0 = time.perf_counter()
    evaluation = evaluate_all(cfg, data, split, trained, als=als, ranked=ranked)
    peer_seconds = {f"{name}_peer": float(rec["seconds"]) for name, rec in evaluation["peers"].items()}
    tuned_here = sum(v for name, v in peer_seconds.items() if als is None or name != "als_peer")
    seconds["evaluate"] = time.perf_counter() - t0 - tuned_here  # peers' tuning: apart
    seconds |= peer_seconds
    if publication.served is not None:  # the student serving now, on the same holdout
        evaluation["served"] = served_metrics(publication.served, cfg, data, split)
    params = trained.parameter_counts()
    context = {"parameters": params, "seconds": seconds}
    gates, warnings = check_publish_gates(cfg, evaluation, context)  # GateError: nothing staged yet
    if cfg.publish.refit:  # the figures above stay the evaluated weights'; the refit student is published
        t0 = time.perf_counter()
        trained = refit_trained(cfg, data, trained)
        seconds["refit"] = time.perf_counter() - t0
    config_json = cfg.model_dump(mode="json")
    plan = VersionPlan(
        cfg=cfg, data=data, split=split, trained=trained, evaluation=evaluation, gates=gates,
        warnings=warnings, parameters=params, seconds=seconds,
        version=new_version(data.fingerprint, json.dumps(config_json, sort_keys=True)),
        config_json=config_json, source=teacher_source(cfg, trained.teacher),
        warm=None if warm is None else warm.summary(), events=publication.events,
    )  # fmt: skip
    build = partial(stage_version, plan)
    version_dir = publish(Path(cfg.models_dir), plan.version, build, set_latest=publication.set_latest)
    return PipelineResult(
        version_dir=version_dir, manifest=load_manifest(version_dir), metrics=plan.metrics, seconds=seconds,
        warm=warm,
    )  # fmt: skip


def refit_trained(
    cfg: PipelineConfig, data: Interactions, trained: Trained, progress: bool = False
) -> Trained:
    """`trained` with its student fine-tuned on the whole log (`publish.refit`, training/student/refit.py),
    distilled from the same source as before, its soft labels now over every interaction."""
    whole = whole_log_split(data)
    labels = distillation_labels(cfg, trained.teacher, trained.scratch, whole, progress)
    return replace(trained, student=refit_student(cfg, whole, trained.student, labels, progress))


def run_pipeline(
    cfg: PipelineConfig, progress: bool = True, publication: Publication = Publication()
) -> PipelineResult | None:
    """data -> teacher -> soft labels -> student (+ scratch, sweep) -> evaluate -> export -> publish.

    `cfg.warm_start` names a version: every model we train starts from its weights
    (training/warm/). Under torchrun (training/distributed.py) every rank trains and only rank 0
    evaluates and publishes: the other ranks return None.
    """
    distributed.set_threads(cfg)
    seconds: dict[str, float] = {}
    start = t0 = time.perf_counter()
    data, split = load_data(cfg)
    warm = open_warm_start(cfg, data)
    seconds["data"] = time.perf_counter() - t0
    elapsed = time.perf_counter() - start
    with SideStages.start(
        cfg, data, split, warm, scratch_share(cfg, elapsed, [d for _, _, d, _ in student_plan(cfg)])
    ) as side:
        teacher_fit = train_teacher(budgeted(cfg, elapsed), data, split, progress, warm)
        teacher, seconds["teacher"] = teacher_fit.model, teacher_fit.seconds
        t0, done = time.perf_counter(), {}
        if (scratch_fit := side.scratch_fit()) is not None:  # trained beside the teacher
            done["scratch"] = scratch_fit
            seconds["scratch_wait"] = time.perf_counter() - t0  # the teacher's wait for it
        scratch = scratch_fit.model if scratch_fit is not None else None
        labels = None
        if cfg.distill.soft_labels_from == "teacher" or scratch is not None:  # else: in train_students
            t0 = time.perf_counter()
            if side.soft_labels_share(cfg, split, teacher, scratch):  # half the chunks each, then read back
                distillation_labels(cfg, teacher, scratch, split, progress, share=(0, 2))
                side.soft_labels_done()
            labels = distillation_labels(cfg, teacher, scratch, split, progress)
            seconds["soft_labels"] = time.perf_counter() - t0
        if scratch is not None:
            side.rank_references(cfg, split, teacher, scratch)  # while the student trains
        pool = students_pool(cfg, time.perf_counter() - start)
        fits = train_students(
            cfg, data, split, teacher_fit.model, labels, progress, pool_seconds=pool, seconds=seconds,
            warm=warm, done=done,
        )  # fmt: skip
        for name, fit in fits.items():
            seconds[name] = fit.seconds
        if not distributed.is_main():  # torchrun: one model, published by rank 0
            return None
        trained = trained_from_fits(teacher_fit, fits)
        return publish_trained(
            cfg,
            data,
            split,
            trained,
            seconds,
            publication,
            warm,
            als=side.als_peer(),
            ranked=side.references(),
        )
