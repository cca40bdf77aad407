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

import numpy as np
import torch

from core.files import sha256_file
from core.manifest import TeacherSource
from training.config import PipelineConfig
from training.data.types import Interactions
from training.fit.loop import FitResult
from training.teacher.module import PROBE_ROWS, export_check, module_digest, module_teacher
from training.teacher.onnx_graph import onnx_teacher, tables_teacher
from training.teacher.protocol import Teacher
from training.teacher.spec import TeacherImportError, files_sha256, read_spec
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


def _probe(teacher: Any, where: Path | str) -> None:
    """A batch of real-looking queries: the output must be (B, dim of the item matrix), finite."""
    rng = np.random.default_rng(0)
    hist = np.full((PROBE_ROWS, max(teacher.history_len, 1)), teacher.padding_value, np.int64)
    hist[:, -1] = rng.integers(0, max(teacher.n_items, 1), PROBE_ROWS)
    user = torch.from_numpy(rng.integers(0, teacher.n_users + 1, PROBE_ROWS))
    try:
        with torch.no_grad():
            out = teacher.query_vectors(user if teacher.takes_user_id else None, torch.from_numpy(hist))
    except TeacherImportError:
        raise
    except Exception as exc:  # onnxruntime / the user's module raise their own types
        raise TeacherImportError(
            f"{where}: the query fails on a probe batch: {' '.join(str(exc).split())[:300]}"
        ) from exc
    if tuple(out.shape) != (PROBE_ROWS, teacher.dim):
        raise TeacherImportError(
            f"{where}: the query outputs vectors of shape {tuple(out.shape)[1:]}, the item matrix has dim {teacher.dim}"
        )
    if not torch.isfinite(out).all():
        raise TeacherImportError(f"{where}: the query outputs NaN or Inf on a probe batch")


# --- entry point --------------------------------------------------------------------------------------


def import_teacher(cfg: PipelineConfig, data: Interactions) -> Imported:
    """The configured teacher.source, validated against the interaction log; TeacherImportError if bad."""
    start = time.perf_counter()
    kind, arg = parse_source(cfg.teacher.source)
    report: dict[str, Any] = {}
    if kind == "python":
        teacher, files = module_teacher(arg, data, cfg, report)
        _probe(teacher, f"python:{arg}")
        report["export_check"] = export_check(teacher, cfg, f"python:{arg}")
        digest_files = files
    else:
        spec = read_spec(arg, kind)
        teacher = (
            onnx_teacher(spec, data, cfg, report)
            if kind == "onnx"
            else tables_teacher(spec, data, cfg, report)
        )
        _probe(teacher, spec.path)
        digest_files = spec.files
    report |= {"n_items": teacher.n_items, "dim": teacher.dim, "takes_user_id": teacher.takes_user_id,
               "takes_history": teacher.takes_history, "history_len": teacher.history_len}  # fmt: skip
    if teacher.known_users is not None:
        report["unknown_users"] = int((~teacher.known_users).sum())
    digest, each = files_sha256(digest_files) if digest_files else (module_digest(teacher), {})
    source = TeacherSource(source=cfg.teacher.source, kind=kind, sha256=digest, files=each, report=report)  # type: ignore[arg-type]
    teacher.source = source  # what teacher_source() reads back for the cache key and the manifest
    return Imported(teacher, source, time.perf_counter() - start)


def teacher_is_imported(cfg: PipelineConfig) -> bool:
    """Whether the teacher is the user's own (teacher.source), not one this job trains."""
    return cfg.teacher.source != "train"


def import_teacher_stage(cfg: PipelineConfig, data: Interactions) -> Any:
    """The imported teacher as a fit: no curve, no validation (it was trained elsewhere)."""
    result = import_teacher(cfg, data)
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
