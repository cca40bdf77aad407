"""Imported PyTorch teachers (`python:package.module:factory`): the user's module behind our index
maps, exported to ONNX by training/export/ like our own teacher; the import exports it once and
tries every query shape (training/teacher/probe.py) before anything trains.

`factory(**teacher.factory_args)` returns a torch module with `query_vectors(user, history)`,
`item_vectors()`, `history_len`, `padding_value`, `takes_user_id`, `takes_history` (default True),
`item_ids` and, with a user input, `user_ids` (and `oov_user`, default len(user_ids)); optionally
`files`, the weights it read. The manifest lists the module's source file and those files, each with
its sha256; the teacher's digest is taken over what decides its outputs (training/teacher/spec.py).

The module sees histories in its own row space: rows of `item_vectors()` (named by `item_ids`, in
order), left-padded with `padding_value`, which must be no row.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.config import PipelineConfig
from training.data.types import Interactions
from training.teacher.spec import (
    SCORE_WHY,
    TeacherImportError,
    check_mapped,
    check_padding,
    data_order,
    item_lookup,
    row_map,
    user_lookup,
)


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
        package = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TeacherImportError(
            f"{where}: cannot import {module_name!r} ({exc}); the module must be importable: installed, "
            "or on PYTHONPATH (a file in the current folder: PYTHONPATH=. recdistill ...)"
        ) from exc
    except ImportError as exc:
        raise TeacherImportError(f"{where}: cannot import {module_name!r}: {exc}") from exc
    try:
        factory = getattr(package, func)
        module = factory(**cfg.teacher.factory_args)
    except (AttributeError, TypeError, OSError, ValueError, KeyError, RuntimeError) as exc:
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
    check_padding(int(module.padding_value), item_ids, where)
    report["padding_value"] = int(module.padding_value)
    return teacher, _module_files(factory, module)


def _module_files(factory: Any, module: nn.Module) -> list[Path]:
    """What the manifest lists with a sha256 each: the factory's and the module class's source
    files, then the weights the module says it read (`files`)."""
    found = []
    for obj in (factory, type(module)):
        try:
            found.append(inspect.getsourcefile(obj))
        except TypeError:  # a builtin or a partial: no source file of its own
            continue
    paths = [Path(f).resolve() for f in [*found, *getattr(module, "files", [])] if f]
    return list(dict.fromkeys(paths))
