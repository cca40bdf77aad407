"""The user's own teacher (`teacher.source`), imported into the data's index space and checked
before anything trains; afterwards every stage reads it through training.teacher.protocol.Teacher.

- `onnx:<spec>` (training/teacher/onnx_graph.py): the query graph, rebased onto our indices; that graph
  computes the soft labels (onnxruntime) and is what the version publishes.
- `tables:<spec>` (training/teacher/onnx_graph.py): user and item vectors; the query graph is a lookup of
  the user's row, which then is an onnx teacher that knows `known_users` only.
- `python:package.module:factory` (training/teacher/module.py): a torch module behind our index maps,
  exported by training/export/ like our own teacher; a first export and parity check runs here.

Items the teacher has no row for score 0 and read as padding in a history; users it has no row for
are unknown to it. Their share of the interaction log must not exceed `teacher.max_unmapped_share`.
To the pipeline an import is the teacher's stage (`import_teacher_stage`: a fit with no curve), and
`teacher_source` says which teacher a version was distilled from, ours or imported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.files import sha256_file
from core.manifest import TeacherSource
from training.config import PipelineConfig
from training.data.types import Interactions
from training.fit.loop import FitResult
from training.teacher.module import module_teacher
from training.teacher.onnx_graph import onnx_teacher, tables_teacher
from training.teacher.probe import probe_graph, probe_module
from training.teacher.protocol import Teacher
from training.teacher.sample_check import log_quality, sample_quality
from training.teacher.spec import TeacherImportError, output_digest, read_spec, relative_files
from training.workdir import save_record

log = logging.getLogger(__name__)


@dataclass
class Imported:
    teacher: Any  # OnnxTeacher or ModuleTeacher: a training.teacher.protocol.Teacher
    source: TeacherSource
    seconds: float


def parse_source(source: str) -> tuple[str, str]:
    kind, _, arg = source.partition(":")
    if kind not in ("onnx", "python", "tables") or not arg:
        raise TeacherImportError(
            f"teacher.source {source!r}: expected onnx:<spec>, python:<module:factory> or tables:<spec>"
        )
    return kind, arg


def import_teacher(cfg: PipelineConfig, data: Interactions) -> Imported:
    """The configured teacher.source, checked against the interaction log; TeacherImportError if bad.

    Checks, in order: the files and id maps (spec.py), every query shape the later stages feed
    (probe.py: a python module is exported and held to its graph here), then the quality of a
    sample (sample_check.py: a loud warning, not an error, when not clearly above popularity).
    """
    start = time.perf_counter()
    kind, arg = parse_source(cfg.teacher.source)
    report: dict[str, Any] = {}
    x = cfg.export
    if kind == "python":
        where = f"python:{arg}"
        teacher, files = module_teacher(arg, data, cfg, report)
        base = Path.cwd()
        graph, report["export_check"] = probe_module(teacher, where, x.opset, x.parity_atol, cfg.seed)
    else:
        spec = read_spec(arg, kind)
        teacher = (
            onnx_teacher(spec, data, cfg, report)
            if kind == "onnx"
            else tables_teacher(spec, data, cfg, report)
        )
        files, base = spec.files, spec.path.parent
        graph, report["shapes"] = probe_graph(teacher, str(spec.path), cfg.seed)
    report |= {"n_items": teacher.n_items, "dim": teacher.dim, "takes_user_id": teacher.takes_user_id,
               "takes_history": teacher.takes_history, "history_len": teacher.history_len}  # fmt: skip
    if teacher.known_users is not None:
        report["unknown_users"] = int((~teacher.known_users).sum())
    report["sample"] = sample_quality(teacher, data, cfg)
    with torch.no_grad():
        items = teacher.item_vectors().detach().cpu().numpy()
    digest = output_digest(
        graph, items, data.catalog.item_ids, data.user_ids if teacher.takes_user_id else None
    )
    source = TeacherSource(source=cfg.teacher.source, kind=kind, sha256=digest,  # type: ignore[arg-type]
                           files=relative_files(files, base), report=report)  # fmt: skip
    teacher.source = source  # what teacher_source() reads back for the cache key and the manifest
    return Imported(teacher, source, time.perf_counter() - start)


def teacher_is_imported(cfg: PipelineConfig) -> bool:
    """Whether the teacher is the user's own (teacher.source), not one this job trains."""
    return cfg.teacher.source != "train"


def import_teacher_stage(cfg: PipelineConfig, data: Interactions) -> Any:
    """The imported teacher as a fit: no curve, no validation (it was trained elsewhere)."""
    result = import_teacher(cfg, data)
    log_quality(result.source.report["sample"])
    fit = FitResult(result.teacher, Path(cfg.teacher.source.partition(":")[2]), {}, [], result.seconds)
    save_record(cfg, "teacher", fit, data.fingerprint)
    log.info("teacher: imported %s (sha256 %s) in %.1f s: %s", cfg.teacher.source,
             result.source.sha256[:12], result.seconds, result.source.report)  # fmt: skip
    return fit


def teacher_source(cfg: PipelineConfig, teacher: Teacher) -> TeacherSource:
    """Which teacher this is, for the soft-label cache key and the manifest."""
    if teacher_is_imported(cfg):
        return teacher.source  # type: ignore[attr-defined]
    checkpoint = Path(cfg.work_dir) / "teacher.pt"
    digest = sha256_file(checkpoint) if checkpoint.is_file() else ""
    return TeacherSource(source="train", kind="train", sha256=digest)
