"""ONNX export of the student and the teacher's query side, and the parity check that gates publishing.

Per side two graphs (names from core.manifest, the contract with the service):
  user graph: inputs [user,] history -> user_vector              (torch.onnx.export of `user_vectors`)
  topk graph: inputs [user,] history, k -> scores, indices       (the user graph + MatMul with the item
                                                                  matrix as an initializer + TopK)
plus the item vectors as .npy. The TopK lives inside the graph so the service never materialises a
[batch, n_items] score matrix in Python. The exported graphs hold no training code: only the query
tower and a constant item matrix.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
    ModelCard,
    OnnxGraph,
    TensorSpec,
)

log = logging.getLogger(__name__)

Side = Literal["student", "teacher"]


class ParityError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing may be published."""


class _UserVectors(nn.Module):
    """Wraps `model.user_vectors` as `forward` so torch.onnx.export traces the query tower only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model.user_vectors(*inputs)


def _has_user_input(side: Side) -> bool:
    return side == "teacher"


def _input_specs(side: Side, with_k: bool) -> dict[str, TensorSpec]:
    specs: dict[str, TensorSpec] = {}
    if _has_user_input(side):
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
    if _has_user_input(side):
        assert users is not None
        out = model.user_vectors(torch.as_tensor(users, dtype=torch.long), history)
    else:
        out = model.user_vectors(history)
    return out.detach().cpu().numpy().astype(np.float32)


def export_user_graph(model: Any, side: Side, path: Path, opset: int) -> None:
    """torch.onnx.export of user_vectors with dynamic batch and history length.

    The TorchScript exporter (dynamo=False) is used on purpose: for a small MLP / one-layer
    transformer it is the most predictable route in torch 2.13 and needs no onnxscript rewrites.
    """
    model = model.eval()
    wrapper = _UserVectors(model).eval()
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
    if _has_user_input(side):
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
    matrix_name = "item_vectors_t"
    graph.initializer.append(
        numpy_helper.from_array(np.ascontiguousarray(items.T, dtype=np.float32), matrix_name)
    )
    graph.input.append(helper.make_tensor_value_info(K_INPUT, TensorProto.INT64, [1]))
    graph.node.extend(
        [
            helper.make_node(
                "MatMul", [USER_VECTOR_OUTPUT, matrix_name], ["all_scores"], name="score_all_items"
            ),
            helper.make_node(
                "TopK",
                ["all_scores", K_INPUT],
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


def export_side(model: Any, side: Side, out_dir: Path, opset: int, parameters: int) -> ModelCard:
    """Write `<side>_user.onnx`, `<side>_topk.onnx`, `<side>_item_vectors.npy` into out_dir."""
    out_dir = Path(out_dir)
    user_file, topk_file, items_file = f"{side}_user.onnx", f"{side}_topk.onnx", f"{side}_item_vectors.npy"
    export_user_graph(model, side, out_dir / user_file, opset)
    items = item_matrix(model)
    np.save(out_dir / items_file, items, allow_pickle=False)
    build_topk_graph(out_dir / user_file, items, out_dir / topk_file)
    vector = TensorSpec(dtype="float32", shape=["batch", items.shape[1]])
    return ModelCard(
        topk=OnnxGraph(
            file=topk_file,
            inputs=_input_specs(side, with_k=True),
            outputs={
                SCORES_OUTPUT: TensorSpec(dtype="float32", shape=["batch", "k"]),
                INDICES_OUTPUT: TensorSpec(dtype="int64", shape=["batch", "k"]),
            },
        ),
        user=OnnxGraph(
            file=user_file, inputs=_input_specs(side, with_k=False), outputs={USER_VECTOR_OUTPUT: vector}
        ),
        item_vectors=items_file,
        dim=int(items.shape[1]),
        history_len=int(model.history_len),
        padding_value=int(model.padding_value),
        parameters=int(parameters),
        oov_user=int(model.oov_user) if _has_user_input(side) else None,
    )


# --- parity ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityInputs:
    users: np.ndarray  # int64 [B] (teacher only; ignored for the student)
    histories: np.ndarray  # int64 [B, L], left-padded with n_items


def parity_inputs(
    histories: np.ndarray, users: np.ndarray, n_users: int, n_items: int, n_rows: int, seed: int
) -> ParityInputs:
    """At least `n_rows` rows: the given real users' histories, topped up with random histories.

    Random rows have random lengths (0 .. L, so all-padding rows are included) and random users
    (the OOV row n_users included), so a small dataset still checks >= n_rows distinct inputs.
    """
    rng = np.random.default_rng(seed)
    histories = np.asarray(histories, dtype=np.int64)[:n_rows]
    users = np.asarray(users, dtype=np.int64)[:n_rows]
    missing = n_rows - len(histories)
    if missing > 0:
        length = histories.shape[1]
        extra = np.full((missing, length), n_items, dtype=np.int64)
        lengths = rng.integers(0, length + 1, size=missing)
        for row, n in enumerate(lengths):
            if n:
                extra[row, length - n :] = rng.integers(0, n_items, size=n)
        histories = np.concatenate([histories, extra])
        users = np.concatenate([users, rng.integers(0, n_users + 1, size=missing)])
    return ParityInputs(users=users, histories=histories)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _feeds(side: Side, inputs: ParityInputs, rows: slice) -> dict[str, np.ndarray]:
    feeds = {HISTORY_INPUT: inputs.histories[rows]}
    if _has_user_input(side):
        feeds[USER_INPUT] = inputs.users[rows]
    return feeds


def check_parity(
    model: Any,
    side: Side,
    card: ModelCard,
    out_dir: Path,
    inputs: ParityInputs,
    k: int,
    atol: float,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Compare the exported graphs with PyTorch on every row; raise ParityError on any failure.

    The top-k must hold the same items in the same order. Where orders differ only between items
    whose PyTorch scores are within `atol` (near-ties that float rounding may swap), the ONNX list is
    still a correct top-k: accepted, and counted as `tie_swaps`. Scores and user vectors must agree
    within `atol`.
    """
    out_dir = Path(out_dir)
    topk_sess, user_sess = _session(out_dir / card.topk.file), _session(out_dir / card.user.file)
    items = item_matrix(model)
    k = min(k, items.shape[0])
    n = len(inputs.histories)
    max_score_diff = max_vector_diff = 0.0
    exact_rows = tie_swaps = 0
    bad_rows: list[int] = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        ref_vec = torch_user_vectors(model, side, inputs.users[rows], inputs.histories[rows])
        ref_scores = ref_vec @ items.T  # (B, N)
        ref_idx = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
        ref_top = np.take_along_axis(ref_scores, ref_idx, axis=1)
        feeds = _feeds(side, inputs, rows)
        (vec,) = user_sess.run([USER_VECTOR_OUTPUT], feeds)
        scores, idx = topk_sess.run(
            [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
        )
        max_vector_diff = max(max_vector_diff, float(np.max(np.abs(vec - ref_vec), initial=0.0)))
        max_score_diff = max(max_score_diff, float(np.max(np.abs(scores - ref_top), initial=0.0)))
        same = (idx == ref_idx).all(axis=1)
        exact_rows += int(same.sum())
        for r in np.flatnonzero(~same):
            # The ONNX items' true scores must match the true top-k scores position by position.
            true_of_onnx = ref_scores[r, idx[r]]
            if len(set(idx[r].tolist())) == k and np.all(np.abs(true_of_onnx - ref_top[r]) <= atol):
                tie_swaps += 1
            else:
                bad_rows.append(start + int(r))
    result = {
        "rows": n,
        "k": k,
        "atol": atol,
        "exact_topk_rows": exact_rows,
        "tie_swaps": tie_swaps,
        "mismatched_rows": len(bad_rows),
        "max_abs_score_diff": max_score_diff,
        "max_abs_user_vector_diff": max_vector_diff,
    }
    result["passed"] = not bad_rows and max_score_diff <= atol and max_vector_diff <= atol
    log.info("%s parity: %s", side, result)
    if not result["passed"]:
        raise ParityError(
            f"{side} ONNX parity failed on {n} rows: {len(bad_rows)} top-{k} mismatches "
            f"(first rows {bad_rows[:5]}), max score diff {max_score_diff:.3g}, "
            f"max user-vector diff {max_vector_diff:.3g} (atol {atol})"
        )
    return result
