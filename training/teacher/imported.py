"""The user's own teacher (`teacher.source`), imported into the data's index space and checked
before anything trains; afterwards every stage reads it through training.teacher.protocol.Teacher.

- `onnx:<spec>` (training/teacher/onnx_graph.py): the query graph, rebased onto our indices; that graph
  computes the soft labels (onnxruntime) and is what the version publishes.
- `tables:<spec>` (training/teacher/onnx_graph.py): user and item vectors; the query graph is a lookup of
  the user's row, which then is an onnx teacher that knows `known_users` only.
- `python:package.module:factory` (training/teacher/module.py): a torch module behind our index maps,
  exported by training/export/graphs.py like our own teacher; a first export and parity check runs here.

Items the teacher has no row for score 0 and read as padding in a history; users it has no row for
are unknown to it. Their share of the interaction log must not exceed `teacher.max_unmapped_share`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.manifest import TeacherSource
from training.config import PipelineConfig
from training.data.types import Interactions
from training.teacher.module import PROBE_ROWS, export_check, module_digest, module_teacher
from training.teacher.onnx_graph import onnx_teacher, tables_teacher
from training.teacher.spec import TeacherImportError, files_sha256, read_spec


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
