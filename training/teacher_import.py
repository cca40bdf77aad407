"""The user's own teacher (`teacher.source`), imported into the data's index space and checked
before anything trains; afterwards every stage reads it through training.teacher_protocol.Teacher.

- `onnx:<spec>`: the query graph is rebased onto our indices by two Gather nodes in front of its
  inputs (data item index -> its row, data user index -> its row; pads and unknowns -> its own pad
  and OOV index), its output renamed to the contract's `user_vector`. That graph is what soft labels
  are computed with (onnxruntime) and what the version publishes.
- `tables:<spec>`: user and item vectors. The query graph is a Gather of the user's row (history
  ignored), built here and then treated as an onnx teacher; it knows `known_users` only.
- `python:package.module:factory`: `factory(**teacher.factory_args)` returns a torch module with
  `query_vectors(user, history)`, `item_vectors()`, `history_len`, `padding_value`, `takes_user_id`,
  `takes_history` (default True), `item_ids` and, with a user input, `user_ids` (and `oov_user`,
  default len(user_ids)). It is wrapped with the same index maps and exported by training/export.py
  like our own teacher; a first export and parity check runs here, before training.

Items the teacher has no row for score 0 and read as padding in a history; users it has no row for
are unknown to it. Their share of the interaction log must not exceed `teacher.max_unmapped_share`.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from core.manifest import HISTORY_INPUT, USER_INPUT, USER_VECTOR_OUTPUT, TeacherSource
from training.config import PipelineConfig
from training.data import Interactions
from training.teacher_spec import (
    SCORE_WHY,
    Spec,
    TeacherImportError,
    check_mapped,
    files_sha256,
    read_ids,
    read_matrix,
    read_spec,
    row_map,
)

OPSET = 17
PROBE_ROWS = 64


@dataclass
class Imported:
    teacher: Any  # OnnxTeacher or ModuleTeacher: a training.teacher_protocol.Teacher
    source: TeacherSource
    seconds: float


def parse_source(source: str) -> tuple[str, str]:
    kind, _, arg = source.partition(":")
    if kind not in ("onnx", "python", "tables") or not arg:
        raise TeacherImportError(
            f"teacher.source {source!r}: expected onnx:<spec>, python:<module:factory> or tables:<spec>"
        )
    return kind, arg


def _item_lookup(rows: np.ndarray, pad: int) -> np.ndarray:
    """int64 [n_items + 1]: data item index -> teacher row; the data pad and unmapped items -> `pad`."""
    return np.append(np.where(rows >= 0, rows, pad), pad).astype(np.int64)


def _user_lookup(rows: np.ndarray, oov: int) -> np.ndarray:
    """int64 [n_users + 1]: data user index -> teacher row; OOV and unmapped users -> `oov`."""
    return np.append(np.where(rows >= 0, rows, oov), oov).astype(np.int64)


def _data_order(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32 [n_items, D]: the teacher's item rows in data order; an unmapped item is a zero row."""
    out = np.zeros((len(rows), vectors.shape[1]), np.float32)
    out[rows >= 0] = vectors[rows[rows >= 0]]
    return out


# --- ONNX teachers (onnx: and tables:) --------------------------------------------------------------


class OnnxTeacher(nn.Module):
    """A query graph in the data's index space, run by onnxruntime; scores = its output @ items.T."""

    def __init__(self, graph: onnx.ModelProto, items: np.ndarray, n_users: int, takes_user_id: bool,
                 takes_history: bool, history_len: int, known_users: np.ndarray | None, threads: int) -> None:  # fmt: skip
        super().__init__()
        import onnxruntime as ort

        self.graph = graph
        self.n_users, self.n_items, self.dim = int(n_users), int(items.shape[0]), int(items.shape[1])
        self.takes_user_id, self.takes_history = takes_user_id, takes_history
        self.history_len, self.padding_value, self.oov_user = int(history_len), self.n_items, self.n_users
        self.known_users = known_users
        self.register_buffer("items", torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        self.session = ort.InferenceSession(
            graph.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        feeds = {HISTORY_INPUT: history.detach().cpu().numpy().astype(np.int64)}
        if self.takes_user_id:
            assert user is not None, "this teacher reads a user index: pass the user indices"
            feeds[USER_INPUT] = user.detach().cpu().numpy().astype(np.int64)
        (out,) = self.session.run([USER_VECTOR_OUTPUT], feeds)
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def item_vectors(self) -> torch.Tensor:
        return self.items

    def onnx_user_graph(self) -> onnx.ModelProto:
        return self.graph

    def n_parameters(self) -> int:
        """Weights of the query graph (our index maps excluded) plus the item matrix."""
        own = {"recdistill_item_rows", "recdistill_user_rows"}
        weights = sum(int(np.prod(t.dims)) for t in self.graph.graph.initializer if t.name not in own)
        return weights + self.n_items * self.dim

    def forward(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        return self.query_vectors(user, history)


def rebase_graph(model: onnx.ModelProto, q: dict[str, Any], items: np.ndarray | None,
                 users: np.ndarray | None, where: Path) -> onnx.ModelProto:  # fmt: skip
    """The query graph with our input/output names, reading data indices (Gather through the maps)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name for t in g.initializer}
    real = [i for i in g.input if i.name not in inits]
    named = {q.get("history_input"): items, q.get("user_input"): users}
    named.pop(None, None)
    for inp in real:
        if inp.name not in named:
            raise TeacherImportError(f"{where}: graph input {inp.name!r} is not named in the spec's [query]")
    for name in named:
        if name not in {i.name for i in real}:
            raise TeacherImportError(
                f"{where}: the spec names input {name!r}, the graph has {[i.name for i in real]}"
            )
    out_name = q.get("output", USER_VECTOR_OUTPUT)
    if out_name not in {o.name for o in g.output}:
        raise TeacherImportError(
            f"{where}: no graph output {out_name!r} (outputs {[o.name for o in g.output]})"
        )
    renamed = {name: f"teacher__{name}" for name in named}
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    nodes = []
    new_inputs = [helper.make_tensor_value_info(HISTORY_INPUT, TensorProto.INT64, ["batch", "history_len"])]
    for name, our, table, rows in (
        (q.get("history_input"), HISTORY_INPUT, "recdistill_item_rows", items),
        (q.get("user_input"), USER_INPUT, "recdistill_user_rows", users),
    ):
        if name is None:
            continue
        assert rows is not None
        elem = next(i for i in real if i.name == name).type.tensor_type.elem_type
        if elem not in (TensorProto.INT64, TensorProto.INT32):
            raise TeacherImportError(
                f"{where}: input {name!r} has element type {elem}; expected int64 or int32 indices"
            )
        g.initializer.append(numpy_helper.from_array(rows, table))
        gathered = renamed[name] if elem == TensorProto.INT64 else f"{renamed[name]}_int64"
        nodes.append(
            helper.make_node("Gather", [table, our], [gathered], name=f"recdistill_map_{our}", axis=0)
        )
        if elem == TensorProto.INT32:
            nodes.append(helper.make_node("Cast", [gathered], [renamed[name]], to=TensorProto.INT32))
        if our == USER_INPUT:
            new_inputs.insert(0, helper.make_tensor_value_info(USER_INPUT, TensorProto.INT64, ["batch"]))
    if out_name != USER_VECTOR_OUTPUT:
        nodes.append(helper.make_node("Identity", [out_name], [USER_VECTOR_OUTPUT], name="recdistill_output"))
    for node in reversed(nodes):
        g.node.insert(0, node) if node.op_type != "Identity" else g.node.append(node)
    keep = [i for i in g.input if i.name in inits]
    del g.input[:]
    g.input.extend(new_inputs + keep)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(USER_VECTOR_OUTPUT, TensorProto.FLOAT, ["batch", "dim"]))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise TeacherImportError(f"{where}: the rebased query graph is not valid ONNX: {exc}") from exc
    return model


def lookup_graph(vectors: np.ndarray) -> onnx.ModelProto:
    """user -> its row of `vectors` (rows + one zero row for an unknown user): a tables query."""
    table = np.vstack([vectors, np.zeros((1, vectors.shape[1]), np.float32)]).astype(np.float32)
    node = helper.make_node("Gather", ["user_vectors", "user"], ["user_vector"], name="user_row", axis=0)
    graph = helper.make_graph(
        [node], "user_lookup",
        [helper.make_tensor_value_info("user", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("user_vector", TensorProto.FLOAT, ["batch", vectors.shape[1]])],
        [numpy_helper.from_array(table, "user_vectors")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


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


def _onnx_teacher(spec: Spec, data: Interactions, cfg: PipelineConfig, report: dict) -> OnnxTeacher:
    q = spec.query or {}
    graph_path = spec.file(q, "graph")
    try:
        model = onnx.load(str(graph_path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError
        raise TeacherImportError(
            f"{graph_path}: not a loadable ONNX graph: {' '.join(str(exc).split())[:300]}"
        ) from exc
    items = read_matrix(spec, spec.items, "item")
    item_rows = row_map(items.ids, data.catalog.item_ids)
    t = cfg.teacher
    report["items"] = check_mapped(
        item_rows, data.item, data.catalog.item_ids, "item", items.path, t.max_unmapped_share
    )
    user_rows = None
    if q.get("user_input"):
        users = read_ids(spec.file(spec.users or {}, "ids"))
        rows = row_map(users, data.user_ids)
        report["users"] = check_mapped(
            rows, data.user, data.user_ids, "user", spec.path, t.max_unmapped_share
        )
        user_rows = _user_lookup(rows, int(q.get("oov_user", len(users))))
    pad = int(q.get("padding_value", len(items.ids)))
    rebased = rebase_graph(
        model, q, _item_lookup(item_rows, pad) if q.get("history_input") else None, user_rows, graph_path
    )
    return OnnxTeacher(
        rebased, _data_order(items.vectors, item_rows), data.n_users, bool(q.get("user_input")),
        bool(q.get("history_input")), int(q.get("history_len", 1)), None, cfg.threads or 1,
    )  # fmt: skip


def _tables_teacher(spec: Spec, data: Interactions, cfg: PipelineConfig, report: dict) -> OnnxTeacher:
    items = read_matrix(spec, spec.items, "item")
    users = read_matrix(spec, spec.users or {}, "user")
    if users.vectors.shape[1] != items.vectors.shape[1]:
        raise TeacherImportError(
            f"{users.path}: user vectors have dim {users.vectors.shape[1]}, the item vectors "
            f"({items.path.name}) {items.vectors.shape[1]}"
        )
    t = cfg.teacher
    item_rows = row_map(items.ids, data.catalog.item_ids)
    user_rows = row_map(users.ids, data.user_ids)
    report["items"] = check_mapped(
        item_rows, data.item, data.catalog.item_ids, "item", items.path, t.max_unmapped_share
    )
    report["users"] = check_mapped(
        user_rows, data.user, data.user_ids, "user", users.path, t.max_unmapped_share
    )
    q = {"user_input": "user", "output": "user_vector"}
    graph = rebase_graph(
        lookup_graph(users.vectors), q, None, _user_lookup(user_rows, len(users.ids)), users.path
    )
    return OnnxTeacher(
        graph,
        _data_order(items.vectors, item_rows),
        data.n_users,
        True,
        False,
        1,
        user_rows >= 0,
        cfg.threads or 1,
    )


# --- PyTorch module teachers (python:) --------------------------------------------------------------


class ModuleTeacher(nn.Module):
    """The user's module behind our index maps; exported to ONNX by training/export.py like ours."""

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
        self.register_buffer("item_rows", torch.from_numpy(_item_lookup(item_rows, int(m.padding_value))))
        self.register_buffer(
            "user_rows", torch.from_numpy(user_rows if user_rows is not None else np.zeros(1, np.int64))
        )
        with torch.no_grad():
            own = m.item_vectors().detach().cpu().numpy().astype(np.float32)
        self.register_buffer("items", torch.from_numpy(_data_order(own, item_rows)))
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


def _module_teacher(
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
        user_rows = _user_lookup(rows, int(getattr(module, "oov_user", len(user_ids))))
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


def _export_check(teacher: ModuleTeacher, cfg: PipelineConfig, where: str) -> dict[str, float]:
    """Export the module now and run it in onnxruntime: a module that does not export fails before training."""
    from training.export import export_user_graph, ort_session, torch_user_vectors

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


# --- entry point --------------------------------------------------------------------------------------


def import_teacher(cfg: PipelineConfig, data: Interactions) -> Imported:
    """The configured teacher.source, validated against the interaction log; TeacherImportError if bad."""
    start = time.perf_counter()
    kind, arg = parse_source(cfg.teacher.source)
    report: dict[str, Any] = {}
    if kind == "python":
        teacher, files = _module_teacher(arg, data, cfg, report)
        _probe(teacher, f"python:{arg}")
        report["export_check"] = _export_check(teacher, cfg, f"python:{arg}")
        digest_files = files
    else:
        spec = read_spec(arg, kind)
        teacher = (
            _onnx_teacher(spec, data, cfg, report)
            if kind == "onnx"
            else _tables_teacher(spec, data, cfg, report)
        )
        _probe(teacher, spec.path)
        digest_files = spec.files
    report |= {"n_items": teacher.n_items, "dim": teacher.dim, "takes_user_id": teacher.takes_user_id,
               "takes_history": teacher.takes_history, "history_len": teacher.history_len}  # fmt: skip
    if teacher.known_users is not None:
        report["unknown_users"] = int((~teacher.known_users).sum())
    digest, each = files_sha256(digest_files) if digest_files else (_module_digest(teacher), {})
    source = TeacherSource(source=cfg.teacher.source, kind=kind, sha256=digest, files=each, report=report)  # type: ignore[arg-type]
    return Imported(teacher, source, time.perf_counter() - start)


def _module_digest(teacher: ModuleTeacher) -> str:
    """A python teacher that names no files: the sha256 of its weights and item matrix."""
    import hashlib

    digest = hashlib.sha256(teacher.own_items.tobytes())
    for name, tensor in sorted(teacher.module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()
