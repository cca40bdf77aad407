"""A model version, staged: each side's ONNX graphs and model card with parity checked, the ANN
index, the data files, the report and the manifest that names them all.

`publish_trained` (training/pipeline.py) decides what cannot change once staging starts (the
evaluation, the gates, the version name: a `VersionPlan`); `stage_version` then writes everything
into the staging folder that training/export/publish.py renames into place. The report and the
manifest are built by separate functions from the same plan, so they say the same thing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.manifest import (
    INDICES_OUTPUT,
    SCORES_OUTPUT,
    USER_VECTOR_OUTPUT,
    DatasetInfo,
    Manifest,
    ModelCard,
    OnnxGraph,
    Retrieval,
    TeacherSource,
    TensorSpec,
)
from training.config import PipelineConfig
from training.data.types import Interactions, Split
from training.evaluate.report import write_report
from training.export.ann import retrieval_for_student
from training.export.graphs import (
    ItemPrecision,
    Side,
    build_topk_graph,
    export_user_graph,
    has_user_input,
    input_specs,
    item_matrix,
)
from training.export.item_precision import precision_report_for, reduce_topk_graph
from training.export.parity import side_parity
from training.export.published_log import manifest_item_extra, write_data_files
from training.student.soft_labels import cached_shortlist
from training.trained import Trained


def export_side(
    model: Any,
    side: Side,
    out_dir: Path,
    opset: int,
    parameters: int,
    item_precision: ItemPrecision = "float32",
) -> ModelCard:
    """Write `<side>_user.onnx`, `<side>_topk.onnx`, `<side>_item_vectors.npy` into out_dir.

    `item_precision` applies to the topk graph's item matrix only (the student's; the teacher is the
    reference and stays float32). float32 writes exactly the graph it always did.
    """
    if side == "teacher" and item_precision != "float32":
        raise ValueError(f"item_precision {item_precision!r}: the teacher side is always float32")
    out_dir = Path(out_dir)
    user_file, topk_file, items_file = f"{side}_user.onnx", f"{side}_topk.onnx", f"{side}_item_vectors.npy"
    export_user_graph(model, side, out_dir / user_file, opset)
    items = item_matrix(model)
    np.save(out_dir / items_file, items, allow_pickle=False)
    build_topk_graph(out_dir / user_file, items, out_dir / topk_file)
    reduce_topk_graph(out_dir / topk_file, item_precision, int(items.shape[1]))
    known_file = None  # a lookup teacher: which users it has a vector for (the service says who not)
    if side == "teacher" and model.known_users is not None:
        known_file = f"{side}_known_users.npy"
        np.save(out_dir / known_file, np.asarray(model.known_users, dtype=bool), allow_pickle=False)
    vector = TensorSpec(dtype="float32", shape=["batch", items.shape[1]])
    return ModelCard(
        topk=OnnxGraph(
            file=topk_file,
            inputs=input_specs(model, side, with_k=True),
            outputs={
                SCORES_OUTPUT: TensorSpec(dtype="float32", shape=["batch", "k"]),
                INDICES_OUTPUT: TensorSpec(dtype="int64", shape=["batch", "k"]),
            },
        ),
        user=OnnxGraph(
            file=user_file,
            inputs=input_specs(model, side, with_k=False),
            outputs={USER_VECTOR_OUTPUT: vector},
        ),
        item_vectors=items_file,
        dim=int(items.shape[1]),
        history_len=int(model.history_len),
        padding_value=int(model.padding_value),
        parameters=int(parameters),
        oov_user=int(model.oov_user) if has_user_input(model, side) else None,
        item_precision=item_precision,
        known_users=known_file,
    )


@dataclass
class VersionPlan:
    """Everything decided before staging starts. `metrics` and `seconds` grow while staging (the
    precision report, the score correlation, export and retrieval seconds): the manifest and the
    report read them after."""

    cfg: PipelineConfig
    data: Interactions
    split: Split
    trained: Trained
    evaluation: dict[str, Any]  # training.evaluate.models.evaluate_all
    gates: dict[str, Any]
    warnings: list[str]
    parameters: dict[str, int]
    seconds: dict[str, float]
    version: str
    config_json: dict[str, Any]
    source: TeacherSource
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics:
            self.metrics = published_metrics(self.evaluation, self.trained, self.gates, self.warnings)

    @property
    def dataset(self) -> DatasetInfo:
        d = self.data
        return DatasetInfo(
            name=d.name,
            fingerprint=d.fingerprint,
            n_users=d.n_users,
            n_items=d.n_items,
            n_interactions=len(d),
        )


def published_metrics(
    evaluation: dict[str, Any], trained: Trained, gates: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """The manifest's metrics (before parameters and seconds, which `version_manifest` adds)."""
    return {
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


def export_sides(plan: VersionPlan, stage: Path) -> tuple[dict[str, ModelCard], dict[str, dict]]:
    """Both sides' graphs and cards, each checked for parity (ParityError: nothing is published).

    `export.item_precision` is the student's; the teacher is the float32 reference."""
    cfg, trained = plan.cfg, plan.trained
    cards, parity = {}, {}
    for side, model in (("student", trained.student), ("teacher", trained.teacher)):
        precision = cfg.export.item_precision if side == "student" else "float32"
        cards[side] = export_side(model, side, stage, cfg.export.opset, plan.parameters[side], precision)  # type: ignore[arg-type]
        parity[side] = side_parity(cfg, plan.split, model, side, cards[side], stage)
    return cards, parity


def report_record(
    plan: VersionPlan, parity: dict[str, dict], precision: dict[str, Any] | None
) -> dict[str, Any]:
    """report.json's content (write_report adds the plots and the score correlation)."""
    m, ev, trained = plan.metrics, plan.evaluation, plan.trained
    report = {
        "version": plan.version,
        "dataset": plan.dataset.model_dump(),
        "metrics": {"test": m["test"]},
        "agreement": m["agreement"],
        "valid": m["valid"],
        "sweep": m["sweep"],
        "parity": parity,
        "parameters": plan.parameters,
        "curves": {name: rec.get("curve", []) for name, rec in trained.records.items()},
        "seconds": plan.seconds,
        "test_users": ev["test_users"],
        "test_history": ev["test_history"],
        "peers": ev["peers"],
        "peers_skipped": ev["peers_skipped"],
        "gates": plan.gates,
        "warnings": plan.warnings,
        "teacher_source": plan.source.model_dump(mode="json"),
        "soft_labels_from": plan.cfg.distill.soft_labels_from,
    }
    calibration = {n: r["calibration"] for n, r in trained.records.items() if r.get("calibration")}
    if calibration:
        report["calibration"] = calibration
    if shortlist := cached_shortlist(plan.cfg, plan.split, trained.teacher):
        report["soft_label_shortlist"] = shortlist
    if precision is not None:
        report["precision"] = precision
    return report


def version_manifest(
    plan: VersionPlan,
    cards: dict[str, ModelCard],
    parity: dict[str, dict],
    retrieval: Retrieval,
    report_files: list[str],
) -> Manifest:
    """The manifest: the one source of truth for the version (files and their sha256 are added by publish)."""
    return Manifest(
        version=plan.version,
        created_at=datetime.now(UTC),
        dataset=plan.dataset,
        config=plan.config_json,
        files={},
        student=cards["student"],
        teacher=cards["teacher"],
        parity=parity,
        retrieval=retrieval,
        metrics={**plan.metrics, "parameters": plan.parameters, "seconds": plan.seconds},
        report=report_files,
        teacher_source=plan.source,
        seed_scope="log",
        **manifest_item_extra(plan.data),
    )


def stage_version(plan: VersionPlan, stage: Path) -> Manifest:
    """Write the whole version into `stage` and return its manifest (publish's `build` step)."""
    cfg, split, ev = plan.cfg, plan.split, plan.evaluation
    t0 = time.perf_counter()
    cards, parity = export_sides(plan, stage)
    plan.seconds["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # the ANN index over the student's items (exact: nothing built)
    student_items = np.load(stage / cards["student"].item_vectors, allow_pickle=False)
    retrieval = retrieval_for_student(cfg, split, plan.trained.student, student_items, stage)
    plan.seconds["retrieval"] = time.perf_counter() - t0
    write_data_files(stage, plan.data, split, ev["reported_users"], ev["test_history"])
    precision = None
    if cfg.export.item_precision != "float32":  # the reduced student graph vs float32, same test users
        precision = plan.metrics["precision"] = precision_report_for(cfg, split, stage, cards["student"])
    report = report_record(plan, parity, precision)
    report_files = write_report(stage, report, cfg.eval.k, cfg.eval.recall_k, ev["scatter"])
    if "score_correlation" in report:
        plan.metrics["score_correlation"] = report["score_correlation"]
    return version_manifest(plan, cards, parity, retrieval, report_files)
