"""Imported ONNX teachers (`onnx:` and `tables:`): a query graph rebased onto the data's indices, run
by onnxruntime for the soft labels and published as it is (training/teacher/imported.py calls these).

The rebase puts two Gather nodes in front of the graph's inputs (data item index -> the teacher's
row, data user index -> its row; pads and unknowns -> its own pad and OOV index) and renames its
output to the contract's `user_vector`. Embedding tables become a Gather of the user's row (the
history is an input the graph ignores), so both forms are the same thing afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from core.manifest import HISTORY_INPUT, USER_INPUT, USER_VECTOR_OUTPUT
from training.config import PipelineConfig
from training.data.types import Interactions
from training.teacher.spec import (
    Spec,
    TeacherImportError,
    check_mapped,
    data_order,
    item_lookup,
    read_ids,
    read_matrix,
    row_map,
    user_lookup,
)

OPSET = 17


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
        own = ("recdistill_item_rows", "recdistill_user_rows")  # with any _<n> suffix of a re-import
        weights = sum(
            int(np.prod(t.dims)) for t in self.graph.graph.initializer if not t.name.startswith(own)
        )
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
    used = {t.name for t in g.initializer} | {i.name for i in g.input} | {o.name for o in g.output}
    for node in g.node:
        used |= {node.name, *node.input, *node.output}

    def fresh(base: str) -> str:
        """A tensor/node name the graph does not use yet (a re-imported graph already has our maps)."""
        name, n = base, 0
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        return name

    renamed = {name: fresh(f"teacher__{name}") for name in named}
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
        table = fresh(table)
        g.initializer.append(numpy_helper.from_array(rows, table))
        gathered = renamed[name] if elem == TensorProto.INT64 else fresh(f"{renamed[name]}_int64")
        nodes.append(
            helper.make_node("Gather", [table, our], [gathered], name=fresh(f"recdistill_map_{our}"), axis=0)
        )
        if elem == TensorProto.INT32:
            nodes.append(helper.make_node("Cast", [gathered], [renamed[name]], to=TensorProto.INT32))
        if our == USER_INPUT:
            new_inputs.insert(0, helper.make_tensor_value_info(USER_INPUT, TensorProto.INT64, ["batch"]))
    if out_name != USER_VECTOR_OUTPUT:
        nodes.append(
            helper.make_node("Identity", [out_name], [USER_VECTOR_OUTPUT], name=fresh("recdistill_output"))
        )
    for node in reversed([n for n in nodes if n.op_type != "Identity"]):  # the maps run first
        g.node.insert(0, node)
    g.node.extend(n for n in nodes if n.op_type == "Identity")  # the renamed output last
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


def onnx_teacher(spec: Spec, data: Interactions, cfg: PipelineConfig, report: dict) -> OnnxTeacher:
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
    user_rows, known = None, None
    if q.get("user_input"):
        users = read_ids(spec.file(spec.users or {}, "ids"))
        rows = row_map(users, data.user_ids)
        report["users"] = check_mapped(
            rows, data.user, data.user_ids, "user", spec.path, t.max_unmapped_share
        )
        user_rows = user_lookup(rows, int(q.get("oov_user", len(users))))
        if q.get("known_users"):  # a lookup graph (e.g. a version published from tables): who it knows
            path = spec.file(q, "known_users")
            mask = np.load(path, allow_pickle=False).astype(bool)
            if mask.shape != (len(users),):
                raise TeacherImportError(
                    f"{path}: shape {mask.shape}, expected ({len(users)},) (one per user id)"
                )
            known = (rows >= 0) & mask[np.maximum(rows, 0)]
    pad = int(q.get("padding_value", len(items.ids)))
    rebased = rebase_graph(
        model, q, item_lookup(item_rows, pad) if q.get("history_input") else None, user_rows, graph_path
    )
    return OnnxTeacher(
        rebased, data_order(items.vectors, item_rows), data.n_users, bool(q.get("user_input")),
        bool(q.get("history_input")), int(q.get("history_len", 1)), known, cfg.threads or 1,
    )  # fmt: skip


def tables_teacher(spec: Spec, data: Interactions, cfg: PipelineConfig, report: dict) -> OnnxTeacher:
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
        lookup_graph(users.vectors), q, None, user_lookup(user_rows, len(users.ids)), users.path
    )
    return OnnxTeacher(
        graph,
        data_order(items.vectors, item_rows),
        data.n_users,
        True,
        False,
        1,
        user_rows >= 0,
        cfg.threads or 1,
    )
