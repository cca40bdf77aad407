"""The offline job, stage by stage: data -> teacher -> soft labels -> students -> export/evaluate/publish.

Each stage can run on its own (the CLI's subcommands) because everything a later stage needs is on
disk in `cfg.work_dir`: checkpoints (`teacher.pt`, `student.pt`, `scratch.pt`, `sweep/T=<t>/student.pt`),
the soft-label cache, and one small JSON record per trained model (valid metrics, curve, seconds).
`run_pipeline` chains the stages in one process without reloading anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.files import sha256_file
from core.manifest import DatasetInfo, Manifest, TeacherSource, load_manifest
from training.config import PipelineConfig
from training.data.types import Interactions, Split, leave_last_out, load_interactions, with_validation_items
from training.evaluate.ranking import padded_histories
from training.fit import distributed

if TYPE_CHECKING:
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher

log = logging.getLogger(__name__)


class StageError(ValueError):
    """A stage's inputs are missing or stale (e.g. no teacher checkpoint, or one trained on other data)."""


@dataclass
class Trained:
    """The models a publish needs, and what their training recorded."""

    teacher: Teacher  # ours (training.teacher.two_tower.TwoTowerTeacher) or an imported one
    student: MLPStudent
    scratch: MLPStudent | None = None
    sweep: list[tuple[float, MLPStudent]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> valid_metrics, curve, seconds


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


def training_split(cfg: PipelineConfig, split: Split) -> Split:
    """What the teacher, the soft labels and the students train on (`eval.train_on_valid`).

    The validation users every stage early-stops on are one seeded sample (`validation_split`
    with the largest stage `valid_max_users`; each stage's own sample is drawn inside it); every
    other user's validation item is trained on. Evaluation and export keep the full `split`.
    """
    from training.fit.loop import validation_split

    if not cfg.eval.train_on_valid:
        return split
    sizes = [cfg.teacher.valid_max_users, cfg.student.valid_max_users]
    size = None if None in sizes else max(s for s in sizes if s is not None)
    held_out = validation_split(split, size, cfg.seed).valid_users
    if len(held_out) == len(split.valid_users):
        return split
    return with_validation_items(split, held_out)


def _record_path(cfg: PipelineConfig, name: str) -> Path:
    return Path(cfg.work_dir) / f"{name}.json"


def _save_record(cfg: PipelineConfig, name: str, fit: Any, fingerprint: str) -> dict[str, Any]:
    record = {
        "checkpoint": str(fit.checkpoint),
        "fingerprint": fingerprint,
        "valid_metrics": fit.valid_metrics,
        "curve": fit.curve,
        "seconds": fit.seconds,
    }
    if getattr(fit, "calibration", None) is not None:
        record["calibration"] = fit.calibration
    path = _record_path(cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():  # torchrun: rank 0 writes the records, as it writes the checkpoints
        path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return record


def _load_record(cfg: PipelineConfig, name: str, fingerprint: str) -> dict[str, Any]:
    path = _record_path(cfg, name)
    if not path.is_file():
        raise StageError(f"{path}: not found; run the stage that trains '{name}' first")
    record = json.loads(path.read_text())
    if record.get("fingerprint") != fingerprint:
        raise StageError(f"{path}: trained on other data (fingerprint differs); retrain '{name}'")
    if not Path(record["checkpoint"]).is_file():
        raise StageError(f"{record['checkpoint']}: checkpoint missing; retrain '{name}'")
    return record


def imported(cfg: PipelineConfig) -> bool:
    """Whether the teacher is the user's own (teacher.source), not one this job trains."""
    return cfg.teacher.source != "train"


def train_teacher(cfg: PipelineConfig, data: Interactions, split: Split, progress: bool = True) -> Any:
    """Train our teacher, or import and check the configured one (training/teacher/imported.py)."""
    if imported(cfg):
        return import_teacher_stage(cfg, data)
    from training.fit.loop import fit_teacher

    fit = fit_teacher(training_split(cfg, split), data.catalog, cfg, Path(cfg.work_dir), progress=progress)
    _save_record(cfg, "teacher", fit, data.fingerprint)
    log.info("teacher: valid %s in %.1f s", fit.valid_metrics, fit.seconds)
    return fit


def import_teacher_stage(cfg: PipelineConfig, data: Interactions) -> Any:
    """The imported teacher as a fit: no curve, no validation (it was trained elsewhere)."""
    from training.fit.loop import FitResult
    from training.teacher.imported import import_teacher

    result = import_teacher(cfg, data)
    fit = FitResult(result.teacher, Path(cfg.teacher.source.partition(":")[2]), {}, [], result.seconds)
    _save_record(cfg, "teacher", fit, data.fingerprint)
    log.info("teacher: imported %s (sha256 %s) in %.1f s: %s", cfg.teacher.source,
             result.source.sha256[:12], result.seconds, result.source.report)  # fmt: skip
    return fit


def load_trained_teacher(cfg: PipelineConfig, data: Interactions) -> tuple[Teacher, dict[str, Any]]:
    """The teacher in work_dir, or the imported one (imported again: its checks run again)."""
    from training.teacher.two_tower import load_teacher

    if imported(cfg):
        fit = import_teacher_stage(cfg, data)
        return fit.model, _fit_record(fit)
    record = _load_record(cfg, "teacher", data.fingerprint)
    return load_teacher(Path(record["checkpoint"])), record


def teacher_source(cfg: PipelineConfig, teacher: Teacher) -> TeacherSource:
    """Which teacher this is, for the soft-label cache key and the manifest."""
    if imported(cfg):
        return teacher.source  # type: ignore[attr-defined]
    checkpoint = Path(cfg.work_dir) / "teacher.pt"
    digest = sha256_file(checkpoint) if checkpoint.is_file() else ""
    return TeacherSource(source="train", kind="train", sha256=digest)


def soft_labels(cfg: PipelineConfig, teacher: Teacher, split: Split, progress: bool = True) -> Any:
    """Cached by the teacher's sha256 (checkpoint or imported files): rerunning with the same teacher is free."""
    from training.student.soft_labels import build_soft_labels

    key = teacher_source(cfg, teacher).sha256
    return build_soft_labels(
        teacher, training_split(cfg, split), cfg, Path(cfg.work_dir) / "soft_labels", key, progress=progress
    )


def ensemble_soft_labels(
    cfg: PipelineConfig, teacher: Teacher, scratch: MLPStudent, split: Split, progress: bool = True
) -> Any:
    """Soft labels from teacher + scratch student (`distill.soft_labels_from = "teacher+scratch"`),
    cached by both models' sha256."""
    from training.student.soft_labels import build_soft_labels
    from training.teacher.ensemble import TeacherPlusStudent

    scratch_ckpt = Path(cfg.work_dir) / "scratch.pt"
    digest = sha256_file(scratch_ckpt) if scratch_ckpt.is_file() else ""
    key = hashlib.sha256(f"{teacher_source(cfg, teacher).sha256}+{digest}".encode()).hexdigest()
    return build_soft_labels(
        TeacherPlusStudent(teacher, scratch.uncalibrated()), training_split(cfg, split), cfg,
        Path(cfg.work_dir) / "soft_labels", key, progress=progress,
    )  # fmt: skip


def cached_shortlist(cfg: PipelineConfig, split: Split, teacher: Teacher) -> dict | None:
    """The soft-label shortlist's measured recall for this teacher (None: exact scoring)."""
    from training.student.soft_labels import SHORTLIST_FILE, soft_label_dir

    key = teacher_source(cfg, teacher).sha256
    if not key:
        return None
    folder = soft_label_dir(cfg, training_split(cfg, split), Path(cfg.work_dir) / "soft_labels", key)
    path = folder / SHORTLIST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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
    from training.student.soft_labels import fit_student

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
        _save_record(cfg, name, fits[name], data.fingerprint)
    for name, fit in fits.items():
        log.info("%s: valid %s in %.1f s", name, fit.valid_metrics, fit.seconds)
    return fits


def calibrate_fit(fit: Any, split: Split, cfg: PipelineConfig) -> None:
    """In place: the popularity penalty chosen on `split`'s validation users (training/student/calibrate.py),
    saved into the fit's checkpoint; its validation metrics become the calibrated model's."""
    from training.fit.loop import save_checkpoint, validation_split
    from training.student.calibrate import calibrate_popularity
    from training.student.model import student_checkpoint

    sc, e = cfg.student, cfg.eval
    vsplit = validation_split(split, sc.valid_max_users, cfg.seed)  # the users early stopping read
    result = calibrate_popularity(fit.model, vsplit, sc.popularity_penalties, e.k, e.recall_k)
    save_checkpoint(student_checkpoint(fit.model), Path(fit.checkpoint))
    fit.valid_metrics = result.metrics
    fit.calibration = result.as_record()


# A distilled epoch also scores the soft-label candidates (top_m + n_sampled per example) and
# their KL and ranking terms. Converged on Amazon Beauty (configs/shop.toml) the distilled student
# took 874 s against the scratch student's 512 s (bench/results/quality_amazon-beauty_converged.md),
# so a distilled student is given twice a scratch student's share of the students' budget.
DISTILLED_COST = 2.0


def student_cost(distilled: bool) -> float:
    """A student's weight in the students' budget: distilled (soft labels) or scratch."""
    return DISTILLED_COST if distilled else 1.0


def load_trained(cfg: PipelineConfig, data: Interactions) -> Trained:
    """Rebuild every model a publish needs from cfg.work_dir (the `recdistill export` stage)."""
    from training.student.model import load_student

    teacher, teacher_record = load_trained_teacher(cfg, data)
    records = {"teacher": teacher_record, "student": _load_record(cfg, "student", data.fingerprint)}
    trained = Trained(
        teacher=teacher, student=load_student(Path(records["student"]["checkpoint"])), records=records
    )
    if cfg.distill.train_scratch:
        records["scratch"] = _load_record(cfg, "scratch", data.fingerprint)
        trained.scratch = load_student(Path(records["scratch"]["checkpoint"]))
    for temperature in cfg.distill.sweep_temperatures:
        name = f"sweep/T={temperature:g}"
        records[name] = _load_record(cfg, name, data.fingerprint)
        trained.sweep.append((temperature, load_student(Path(records[name]["checkpoint"]))))
    _check_shapes(trained, data)
    return trained


def _check_shapes(trained: Trained, data: Interactions) -> None:
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
    records = {"teacher": _fit_record(teacher_fit)} | {name: _fit_record(fit) for name, fit in fits.items()}
    return Trained(
        teacher=teacher_fit.model,
        student=fits["student"].model,
        scratch=fits["scratch"].model if "scratch" in fits else None,
        sweep=[(float(n.split("=", 1)[1]), f.model) for n, f in fits.items() if n.startswith("sweep/")],
        records=records,
    )


def _fit_record(fit: Any) -> dict[str, Any]:
    record = {"valid_metrics": fit.valid_metrics, "curve": fit.curve, "seconds": fit.seconds}
    if getattr(fit, "calibration", None) is not None:
        record["calibration"] = fit.calibration
    return record


# --- evaluate, export, publish -----------------------------------------------------------------------


def fit_peers(
    cfg: PipelineConfig, full: Split, split: Split
) -> tuple[dict[str, tuple[Any, int]], dict[str, dict[str, Any]], dict[str, str]]:
    """The classic peers of `eval.peers`: {name: (score_fn, history_len)}, their tuning records, skips.

    Fitted on every train interaction of `full`; ALS is tuned on the validation items of `split`
    (the evaluated sample) and refitted for the test query (training.evaluate.peers.als_peer). A peer that
    cannot run here is skipped with the reason, never silently.
    """
    from training.evaluate.peers import als_peer, implicit_missing
    from training.evaluate.report import popularity_score_fn

    e = cfg.eval
    models: dict[str, tuple[Any, int]] = {}
    records: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(e.peers):
        if name == "popularity":
            models[name] = (popularity_score_fn(full.item_popularity()), 1)
            continue
        if (why := implicit_missing()) is not None:
            log.warning("peer %s skipped: %s", name, why)
            skipped[name] = why
            continue
        peer = als_peer(
            full, e.als.grid(), cfg.seed, cfg.threads or 0, e.test_history,
            e.k, e.recall_k, e.batch_size, eval_split=split,
        )  # fmt: skip
        models[name] = (peer.model.score_fn(), 1)
        records[name] = peer.record()
    return models, records, skipped


def evaluate_all(cfg: PipelineConfig, data: Interactions, split: Split, trained: Trained) -> dict[str, Any]:
    """Test metrics for every model, agreement with the teacher, the sweep, and scatter pairs."""
    from training.evaluate.report import evaluate_models, mean_agreement, score_pairs
    from training.fit.loop import student_score_fn, teacher_score_fn, validation_split

    e = cfg.eval
    full, split = split, validation_split(split, e.max_users, cfg.seed)  # eval.max_users: a seeded sample
    models = {"teacher": (teacher_score_fn(trained.teacher), trained.teacher.history_len)}
    models["student"] = (student_score_fn(trained.student), trained.student.history_len)
    if trained.scratch is not None:
        models["scratch"] = (student_score_fn(trained.scratch), trained.scratch.history_len)
    if (source := soft_label_source(cfg, trained)) is not None:  # what the student learned from
        models[SOFT_LABEL_SOURCE] = (teacher_score_fn(source), source.history_len)
    peers, peer_records, peers_skipped = fit_peers(cfg, full, split)
    models |= peers
    metrics, tops = evaluate_models(split, models, e.k, e.recall_k, e.batch_size, test_history=e.test_history)
    agreement = {
        name: mean_agreement(tops[name], tops["teacher"], e.k)
        for name in tops
        if name not in ("teacher", SOFT_LABEL_SOURCE)
    }
    sweep = []
    for temperature, model in trained.sweep:
        swept, _ = evaluate_models(
            split, {"s": (student_score_fn(model), model.history_len)}, e.k, e.recall_k, e.batch_size,
            test_history=e.test_history,
        )  # fmt: skip
        sweep.append({"temperature": temperature, "metrics": swept["s"]})
    scatter = score_pairs(
        models["teacher"][0], models["student"][0], split,
        trained.teacher.history_len, trained.student.history_len, e.scatter_users, seed=cfg.seed,
        test_history=e.test_history,
    )  # fmt: skip
    return {
        "test": metrics, "agreement": agreement, "sweep": sweep, "scatter": scatter,
        "test_users": len(split.test_users), "test_history": e.test_history,
        "peers": peer_records, "peers_skipped": peers_skipped, "reported_users": split.test_users,
    }  # fmt: skip


# The test-metrics row of the soft labels' source when it is not the teacher itself.
SOFT_LABEL_SOURCE = "teacher+scratch"


def soft_label_source(cfg: PipelineConfig, trained: Trained) -> Teacher | None:
    """The model the soft labels came from when it is not the teacher (`distill.soft_labels_from =
    "teacher+scratch"`: the sum of the teacher and the uncalibrated scratch student, as
    `ensemble_soft_labels` builds it), so the report sets the student beside what it learned from."""
    from training.teacher.ensemble import TeacherPlusStudent

    if cfg.distill.soft_labels_from != "teacher+scratch" or trained.scratch is None:
        return None
    return TeacherPlusStudent(trained.teacher, trained.scratch.uncalibrated())  # type: ignore[return-value]


def _parity(cfg: PipelineConfig, split: Split, model: Any, side: str, card: Any, stage: Path) -> dict:
    """Parity on >= parity_users rows at the model's history length, plus a check at half length."""
    from training.export.graphs import check_parity, parity_inputs

    x = cfg.export
    rng = np.random.default_rng(cfg.seed)
    users = rng.permutation(split.n_users)[: x.parity_users].astype(np.int64)
    result = {}
    for label, length, rows in (
        ("full", model.history_len, x.parity_users),
        ("short", max(1, model.history_len // 2), 100),
    ):
        hist = padded_histories(split, users[:rows], length)
        inputs = parity_inputs(hist, users[:rows], split.n_users, split.n_items, rows, cfg.seed)
        atol, least = x.parity_atol, x.min_precision_overlap  # least: reduced item precision only
        result[label] = check_parity(model, side, card, stage, inputs, x.parity_k, atol, min_overlap=least)  # type: ignore[arg-type]
    out = dict(result["full"])
    out["short_history"] = result["short"]
    out["passed"] = result["full"]["passed"] and result["short"]["passed"]
    return out


def _precision(cfg: PipelineConfig, split: Split, stage: Path, card: Any) -> dict[str, Any]:
    """training.evaluate.report.precision_report on the test users evaluate_all ranked (eval.max_users)."""
    from training.evaluate.report import precision_report
    from training.fit.loop import validation_split

    e = cfg.eval
    users = validation_split(split, e.max_users, cfg.seed)
    return precision_report(
        users, stage, card, e.k, e.recall_k, e.batch_size, seed=cfg.seed, test_history=e.test_history
    )


def write_data_files(
    stage: Path, data: Interactions, split: Split, reported_users: np.ndarray, test_history: str
) -> None:
    """The id maps, metadata, popularity, the seed (the whole log) and the holdout (the test queries
    of `split`, `reported_users` marking the report's sample): see training/export/published_log.py."""
    from training.export.published_log import write_holdout, write_seed

    cat = data.catalog
    np.save(stage / "items.npy", np.asarray(cat.item_ids).astype(str), allow_pickle=False)
    np.save(stage / "users.npy", np.asarray(data.user_ids).astype(str), allow_pickle=False)
    np.save(stage / "item_category.npy", cat.category.astype(np.int32), allow_pickle=False)
    (stage / "categories.json").write_text(json.dumps(list(cat.categories)) + "\n")
    np.save(stage / "item_price.npy", cat.price.astype(np.float32), allow_pickle=False)
    np.save(stage / "popularity.npy", split.item_popularity(), allow_pickle=False)
    write_seed(stage, data)
    write_holdout(stage, split, reported_users, test_history)
    if cat.extra:  # the manifest names it (item_extra, item_extra_columns): see manifest_item_extra
        np.savez(stage / ITEM_EXTRA_FILE, **{name: col.astype(str) for name, col in cat.extra.items()})


ITEM_EXTRA_FILE = "item_extra.npz"


def manifest_item_extra(data: Interactions) -> dict[str, Any]:
    """The manifest fields that describe write_data_files' extra item columns (none: nothing)."""
    columns = list(data.catalog.extra)
    return {"item_extra": ITEM_EXTRA_FILE, "item_extra_columns": columns} if columns else {}


def check_publish_gates(
    cfg: PipelineConfig, evaluation: dict[str, Any], context: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The publish gates (training.evaluate.gates) and quality warnings on the test metrics, logged.

    A failed gate with `publish.require_gates` raises GateError; the refused version's metrics, gate
    results and `context` (parameter counts, stage seconds) are kept in `work_dir/refused.json`
    (no version folder, LATEST untouched), so a refused run can still be compared.
    """
    from training.evaluate.gates import check_gates, enforce, gate_lines, quality_warnings

    test, k = evaluation["test"], cfg.eval.k
    gates = check_gates(test, k, cfg.publish.scratch_tolerance, cfg.publish.require_gates)
    warnings = quality_warnings(test, k)
    for line in warnings:
        log.warning("%s", line)
    for line in gate_lines(gates):
        (log.info if gates["status"] == "passed" else log.warning)("%s", line)
    if gates["status"] == "failed" and distributed.is_main():
        refused = Path(cfg.work_dir) / "refused.json"
        refused.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "test": test,
            "test_history": evaluation["test_history"],
            "gates": gates,
            "warnings": warnings,
            **(context or {}),
        }
        refused.write_text(json.dumps(record, indent=2, default=float) + "\n")
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
    """Evaluate, check the publish gates, then export + parity + report into a staging folder, then
    publish atomically.

    A failed gate (GateError) raises before anything is staged, a parity failure before anything is
    renamed: either way no version, LATEST untouched.
    """
    from training.evaluate.report import write_report
    from training.export.ann import retrieval_for_student
    from training.export.graphs import export_side
    from training.export.publish import new_version, publish
    from training.student.model import count_parameters

    seconds = dict(seconds or {})
    for name, record in trained.records.items():  # training times, also when published by `export`
        seconds.setdefault(name, float(record.get("seconds", 0.0)))
    t0 = time.perf_counter()
    evaluation = evaluate_all(cfg, data, split, trained)
    peer_seconds = {f"{name}_peer": float(rec["seconds"]) for name, rec in evaluation["peers"].items()}
    seconds["evaluate"] = time.perf_counter() - t0 - sum(peer_seconds.values())  # peers' tuning: apart
    seconds |= peer_seconds
    params = {"teacher": trained.teacher.n_parameters(), "student": count_parameters(trained.student)}
    if trained.scratch is not None:
        params["scratch"] = count_parameters(trained.scratch)
    context = {"parameters": params, "seconds": seconds}
    gates, warnings = check_publish_gates(cfg, evaluation, context)  # GateError: nothing staged yet
    config_json = cfg.model_dump(mode="json")
    version = new_version(data.fingerprint, json.dumps(config_json, sort_keys=True))
    metrics = {
        "test": evaluation["test"],
        "agreement": evaluation["agreement"],
        "valid": {name: rec.get("valid_metrics", {}) for name, rec in trained.records.items()},
        "sweep": evaluation["sweep"],
        "test_history": evaluation["test_history"],
        "peers": evaluation["peers"],
        "peers_skipped": evaluation["peers_skipped"],
        "gates": gates,
        "warnings": warnings,
    }
    dataset = DatasetInfo(
        name=data.name, fingerprint=data.fingerprint,
        n_users=data.n_users, n_items=data.n_items, n_interactions=len(data),
    )  # fmt: skip

    source = teacher_source(cfg, trained.teacher)

    def build(stage: Path) -> Manifest:
        t1 = time.perf_counter()
        cards, parity = {}, {}
        for side, model in (("student", trained.student), ("teacher", trained.teacher)):
            # export.item_precision is the student's; the teacher is the float32 reference
            precision = cfg.export.item_precision if side == "student" else "float32"
            cards[side] = export_side(model, side, stage, cfg.export.opset, params[side], precision)  # type: ignore[arg-type]
            parity[side] = _parity(cfg, split, model, side, cards[side], stage)
        seconds["export"] = time.perf_counter() - t1
        t1 = time.perf_counter()  # the ANN index over the student's items (exact: nothing built)
        student_items = np.load(stage / cards["student"].item_vectors, allow_pickle=False)
        retrieval = retrieval_for_student(cfg, split, trained.student, student_items, stage)
        seconds["retrieval"] = time.perf_counter() - t1
        write_data_files(stage, data, split, evaluation["reported_users"], evaluation["test_history"])
        report = {
            "version": version,
            "dataset": dataset.model_dump(),
            "metrics": {"test": metrics["test"]},
            "agreement": metrics["agreement"],
            "valid": metrics["valid"],
            "sweep": metrics["sweep"],
            "parity": parity,
            "parameters": params,
            "curves": {name: rec.get("curve", []) for name, rec in trained.records.items()},
            "seconds": seconds,
            "test_users": evaluation["test_users"],
            "test_history": evaluation["test_history"],
            "peers": evaluation["peers"],
            "peers_skipped": evaluation["peers_skipped"],
            "gates": gates,
            "warnings": warnings,
            "teacher_source": source.model_dump(mode="json"),
            "soft_labels_from": cfg.distill.soft_labels_from,
        }
        calibration = {n: r["calibration"] for n, r in trained.records.items() if r.get("calibration")}
        if calibration:
            report["calibration"] = calibration
        if shortlist := cached_shortlist(cfg, split, trained.teacher):
            report["soft_label_shortlist"] = shortlist
        if cfg.export.item_precision != "float32":  # the reduced student graph vs float32, same test users
            report["precision"] = metrics["precision"] = _precision(cfg, split, stage, cards["student"])
        report_files = write_report(stage, report, cfg.eval.k, cfg.eval.recall_k, evaluation["scatter"])
        if "score_correlation" in report:
            metrics["score_correlation"] = report["score_correlation"]
        return Manifest(
            version=version,
            created_at=datetime.now(UTC),
            dataset=dataset,
            config=config_json,
            files={},
            student=cards["student"],
            teacher=cards["teacher"],
            parity=parity,
            retrieval=retrieval,
            metrics={**metrics, "parameters": params, "seconds": seconds},
            report=report_files,
            teacher_source=source,
            seed_scope="log",
            **manifest_item_extra(data),
        )

    version_dir = publish(Path(cfg.models_dir), version, build)
    return PipelineResult(
        version_dir=version_dir, manifest=load_manifest(version_dir), metrics=metrics, seconds=seconds
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

    Under torchrun (training/fit/distributed.py) every rank trains and only rank 0 evaluates and
    publishes: the other ranks return None.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
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
