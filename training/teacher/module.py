"""Imported PyTorch teachers (`python:package.module:factory`): the user's module behind our index
maps, exported to ONNX by training/export/ like our own teacher; a first export and parity check
runs at import, before anything trains (training/teacher/imported.py calls these).

`factory(**teacher.factory_args)` returns a torch module with `query_vectors(user, history)`,
`item_vectors()`, `history_len`, `padding_value`, `takes_user_id`, `takes_history` (default True),
`item_ids` and, with a user input, `user_ids` (and `oov_user`, default len(user_ids)); optionally
`files`, the weights the source's sha256 is taken over (else the weights themselves).
"""

from __future__ import annotations

import hashlib
import importlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.manifest import HISTORY_INPUT, USER_INPUT, USER_VECTOR_OUTPUT
from training.config import PipelineConfig
from training.data.types import Interactions
from training.export.graphs import export_user_graph, ort_session, torch_user_vectors
from training.teacher.spec import (
    SCORE_WHY,
    TeacherImportError,
    check_mapped,
    data_order,
    item_lookup,
    row_map,
    user_lookup,
)

PROBE_ROWS = 64


class ModuleTeacher(nn.Module):
    """The user's module behind our index maps; exported to ONNX by training/export/graphs.py like ours."""

    def __init__(
        self, module: nn.Module, item_rows: np.ndarray, user_rows: np.ndarray | None, n_users: int
    ) -> None:
        super().__init__()
        m: Any = module
        self.module = module.eval()
        self.takes_user_id, self.takes_history = (
            bool(m.takes_user_id),
            bool(getattr(m, "takes_history", True)),
        )
        self.history_len = int(m.history_len)
        self.n_items, self.padding_value = len(item_rows), len(item_rows)
        self.n_users = int(n_users)
        self.oov_user, self.known_users = self.n_users, None
        self.register_buffer("item_rows", torch.from_numpy(item_lookup(item_rows, int(m.padding_value))))
        self.register_buffer(
            "user_rows", torch.from_numpy(user_rows if user_rows is not None else np.zeros(1, np.int64))
        )
        with torch.no_grad():
            own = m.item_vectors().detach().cpu().numpy().astype(np.float32)
        self.register_buffer("items", torch.from_numpy(data_order(own, item_rows)))
        self.own_items = own
        self.dim = int(own.shape[1]) if own.ndim == 2 else -1

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        user_rows = self.user_rows[user] if self.takes_user_id and user is not None else None
        return self.module.query_vectors(user_rows, self.item_rows[history])  # type: ignore[operator]

    def item_vectors(self) -> torch.Tensor:
        return self.items

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def forward(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        return self.query_vectors(user, history)


def module_teacher(
    arg: str, data: Interactions, cfg: PipelineConfig, report: dict
) -> tuple[ModuleTeacher, list[Path]]:
    where = f"python:{arg}"
    module_name, _, func = arg.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), func)
        module = factory(**cfg.teacher.factory_args)
    except (ImportError, AttributeError, TypeError, OSError) as exc:
        raise TeacherImportError(f"{where}: cannot build the module: {exc}") from exc
    need = ["query_vectors", "item_vectors", "history_len", "padding_value", "takes_user_id", "item_ids"]
    missing = [name for name in need if not hasattr(module, name)]
    if not isinstance(module, nn.Module) or missing:
        raise TeacherImportError(
            f"{where}: expected a torch.nn.Module with {', '.join(need)}; missing {missing or 'nn.Module'}"
        )
    if getattr(module, "score", "dot") != "dot":
        raise TeacherImportError(f"{where}: score {module.score!r}: {SCORE_WHY}")
    t = cfg.teacher
    item_ids = np.asarray(module.item_ids).astype(str)
    item_rows = row_map(item_ids, data.catalog.item_ids)
    report["items"] = check_mapped(
        item_rows, data.item, data.catalog.item_ids, "item", Path(where), t.max_unmapped_share
    )
    user_rows = None
    if module.takes_user_id:
        user_ids = np.asarray(getattr(module, "user_ids", [])).astype(str)
        rows = row_map(user_ids, data.user_ids)
        report["users"] = check_mapped(
            rows, data.user, data.user_ids, "user", Path(where), t.max_unmapped_share
        )
        user_rows = user_lookup(rows, int(getattr(module, "oov_user", len(user_ids))))
    teacher = ModuleTeacher(module, item_rows, user_rows, data.n_users)
    own = teacher.own_items
    if own.ndim != 2 or len(own) != len(item_ids):
        raise TeacherImportError(
            f"{where}: item_vectors() has shape {own.shape}, expected ({len(item_ids)}, dim)"
        )
    if not np.isfinite(own).all():
        raise TeacherImportError(f"{where}: item_vectors() holds NaN or Inf")
    files = [Path(f) for f in getattr(module, "files", [])]  # weights the factory read, for the sha256
    return teacher, files


def export_check(teacher: ModuleTeacher, cfg: PipelineConfig, where: str) -> dict[str, float]:
    """Export the module now and run it in onnxruntime: a module that does not export fails before training."""
    rng = np.random.default_rng(cfg.seed)
    hist = np.full((PROBE_ROWS, teacher.history_len), teacher.padding_value, np.int64)
    for row, n in enumerate(rng.integers(0, teacher.history_len + 1, PROBE_ROWS)):
        hist[row, teacher.history_len - n :] = rng.integers(0, teacher.n_items, n)
    users = rng.integers(0, teacher.n_users + 1, PROBE_ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher_user.onnx"
        try:
            export_user_graph(teacher, "teacher", path, cfg.export.opset)
            feeds = {HISTORY_INPUT: hist} | ({USER_INPUT: users} if teacher.takes_user_id else {})
            (got,) = ort_session(path).run([USER_VECTOR_OUTPUT], feeds)
        except Exception as exc:  # the exporter and onnxruntime raise many types
            raise TeacherImportError(
                f"{where}: does not export to ONNX: {' '.join(str(exc).split())[:300]}"
            ) from exc
    ref = torch_user_vectors(teacher, "teacher", users, hist)
    diff = float(np.max(np.abs(got - ref), initial=0.0))
    if diff > cfg.export.parity_atol:
        raise TeacherImportError(
            f"{where}: the exported graph differs from the module by {diff:.3g} (atol {cfg.export.parity_atol})"
        )
    return {"rows": PROBE_ROWS, "max_abs_user_vector_diff": diff}


def module_digest(teacher: ModuleTeacher) -> str:
    """A python teacher that names no files: the sha256 of its weights and item matrix."""
    digest = hashlib.sha256(teacher.own_items.tobytes())
    for name, tensor in sorted(teacher.module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()
