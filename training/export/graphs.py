"""ONNX export of the student and the teacher's query side: the graphs the service runs.

Per side two graphs (names from core.manifest, the contract with the service):
  user graph: inputs [user,] history -> user_vector              (torch.onnx.export of `user_vectors`)
  topk graph: inputs [user,] history, k -> scores, indices       (the user graph + MatMul with the item
                                                                  matrix as an initializer + TopK)
plus the item vectors as .npy (one side's files and card: `export_side`, training/export/version.py).
The TopK lives inside the graph so the service never materialises a [batch, n_items] score matrix in
Python. The exported graphs hold no training code: only the query tower and a constant item matrix.
The item matrix may then be stored in a reduced precision (training/export/item_precision.py); the
parity check that gates publishing is training/export/parity.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from core.errors import NotPublished
from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
    TensorSpec,
)
from training.teacher.protocol import HasOnnxGraph, Teacher

Side = Literal["student", "teacher"]
ItemPrecision = Literal["float32", "float16", "int8"]
MATRIX_NAME = "item_vectors_t"  # the topk graph's item matrix; reduced forms keep it as a name prefix
SCORE_NODE = "score_all_items"
ALL_SCORES = "all_scores"  # the topk graph's [batch, n_items] scores, before the TopK


class ParityError(NotPublished, RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing may be published."""


class _UserVectors(nn.Module):
    """Wraps the query tower as `forward(*graph inputs)` so torch.onnx.export traces it alone."""

    def __init__(self, model: nn.Module, side: Side):
        super().__init__()
        self.model: Any = model
        self.side: Side = side

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _query_vectors(self.model, self.side, *inputs)


def has_user_input(model: Any, side: Side) -> bool:
    """Whether the query graph reads a user index: a teacher with a user-id table (or a lookup by
    user id) does; a history-only teacher and the student do not."""
    return side == "teacher" and bool(model.takes_user_id)


def _query_vectors(model: Any, side: Side, *inputs: torch.Tensor) -> torch.Tensor:
    """The query vectors from the graph's inputs: (user, history) or (history,).

    The student is `MLPStudent.user_vectors(history)`; a teacher is read through
    training.teacher.protocol.Teacher, whoever wrote it.
    """
    if side == "student":
        return model.user_vectors(*inputs)
    teacher: Teacher = model
    if has_user_input(model, side):
        user, history = inputs
        return teacher.query_vectors(user, history)
    return teacher.query_vectors(None, inputs[-1])


def input_specs(model: Any, side: Side, with_k: bool) -> dict[str, TensorSpec]:
    specs: dict[str, TensorSpec] = {}
    if has_user_input(model, side):
        specs[USER_INPUT] = TensorSpec(dtype="int64", shape=["batch"])
    specs[HISTORY_INPUT] = TensorSpec(dtype="int64", shape=["batch", "history_len"])
    if with_k:
        specs[K_INPUT] = TensorSpec(dtype="int64", shape=[1])
    return specs


@torch.no_grad()
def item_matrix(model: Any) -> np.ndarray:
    """float32 [n_items, dim]: the model's item vectors, exactly as used for scoring."""
    return model.item_vectors().detach().cpu().numpy().astype(np.float32)


@torch.no_grad()
def torch_user_vectors(model: Any, side: Side, users: np.ndarray | None, histories: np.ndarray) -> np.ndarray:
    """float32 [B, dim] from the PyTorch model (the reference the graphs are checked against)."""
    history = torch.as_tensor(histories, dtype=torch.long)
    if has_user_input(model, side):
        assert users is not None
        out = _query_vectors(model, side, torch.as_tensor(users, dtype=torch.long), history)
    else:
        out = _query_vectors(model, side, history)
    return out.detach().cpu().numpy().astype(np.float32)


def export_user_graph(model: Any, side: Side, path: Path, opset: int) -> None:
    """torch.onnx.export of user_vectors with dynamic batch and history length.

    The TorchScript exporter (dynamo=False) is used on purpose: for a small MLP / one-layer
    transformer it is the most predictable route in torch 2.13 and needs no onnxscript rewrites.
    An imported teacher that already is an ONNX graph (training.teacher.protocol.HasOnnxGraph) is
    written as it is.
    """
    if side == "teacher" and isinstance(model, HasOnnxGraph):
        graph = model.onnx_user_graph()
        onnx.checker.check_model(graph)
        onnx.save(graph, str(path))
        return
    model = model.eval()
    wrapper = _UserVectors(model, side).eval()
    length = int(model.history_len)
    history = torch.full((2, length), int(model.padding_value), dtype=torch.long)
    history[:, -1] = 0
    history[1, -2] = min(1, int(model.n_items) - 1)
    names = [HISTORY_INPUT]
    args: tuple[torch.Tensor, ...] = (history,)
    dynamic: dict[str, dict[int, str]] = {
        HISTORY_INPUT: {0: "batch", 1: "history_len"},
        USER_VECTOR_OUTPUT: {0: "batch"},
    }
    if has_user_input(model, side):
        names = [USER_INPUT, HISTORY_INPUT]
        args = (torch.zeros(2, dtype=torch.long), history)
        dynamic[USER_INPUT] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=[USER_VECTOR_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def build_topk_graph(user_graph: Path, items: np.ndarray, path: Path) -> None:
    """Append scores = user_vector @ itemsᵀ and TopK(k) to the user graph; write it to `path`.

    The item matrix is stored transposed ([dim, n_items]) as an initializer so the MatMul needs no
    Transpose node at run time.
    """
    model = onnx.load(str(user_graph))
    graph = model.graph
    matrix_name = MATRIX_NAME
    graph.initializer.append(
        numpy_helper.from_array(np.ascontiguousarray(items.T, dtype=np.float32), matrix_name)
    )
    graph.input.append(helper.make_tensor_value_info(K_INPUT, TensorProto.INT64, [1]))
    graph.node.extend(
        [
            helper.make_node("MatMul", [USER_VECTOR_OUTPUT, matrix_name], [ALL_SCORES], name=SCORE_NODE),
            helper.make_node(
                "TopK",
                [ALL_SCORES, K_INPUT],
                [SCORES_OUTPUT, INDICES_OUTPUT],
                name="topk",
                axis=-1,
                largest=1,
                sorted=1,
            ),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(SCORES_OUTPUT, TensorProto.FLOAT, ["batch", "k"]),
            helper.make_tensor_value_info(INDICES_OUTPUT, TensorProto.INT64, ["batch", "k"]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# --- parity ---------------------------------------------------------------------------------------


def ort_session(path: Path, optimized_path: Path | None = None) -> Any:
    """A one-thread CPU session; `optimized_path` also writes the graph as ORT optimised it at load."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
        opts.log_severity_level = 3  # ORT warns that an ENABLE_ALL graph may not load elsewhere: not our use
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def item_matrix_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the topk graph's item-matrix initializers (int8: codes + scales; float16: the halves).

    Found by name: every form keeps MATRIX_NAME in it, as do the float32 tensors ORT folds it into.
    """
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer if MATRIX_NAME in t.name))
