"""ONNX export of the student and the teacher's query side, and the parity check that gates publishing.

Per side two graphs (names from core.manifest, the contract with the service):
  user graph: inputs [user,] history -> user_vector              (torch.onnx.export of `user_vectors`)
  topk graph: inputs [user,] history, k -> scores, indices       (the user graph + MatMul with the item
                                                                  matrix as an initializer + TopK)
plus the item vectors as .npy. The TopK lives inside the graph so the service never materialises a
[batch, n_items] score matrix in Python. The exported graphs hold no training code: only the query
tower and a constant item matrix.

`export.item_precision` (student only) can shrink that item matrix; the user graph, the .npy and the
graph's inputs and outputs stay float32 and unchanged, so the service loads either the same way:
  int8:    onnxruntime's MatMulNBitsQuantizer turns the MatMul into com.microsoft.MatMulNBits,
           8 bits, one block (= one scale) per item, symmetric, accuracy_level 4 (the user vector is
           quantized per row inside the kernel). Chosen over quantize_dynamic (MatMulInteger), which
           quantizes the whole input batch with one scale, so a user's list depends on who shares
           the micro-batch (on a 1M x 16 matrix alone: top-10 overlap with float32 0.96 vs 0.98,
           5.2 vs 3.1 ms CPU per call; 4.3 ms float32).
  float16: the matrix is stored float16 and Cast to float32 before the MatMul. ORT's CPU session
           constant-folds that Cast at load (no float16 MatMul kernel on x86), so the file shrinks
           but RAM does not.
Measured on a student-shaped topk graph, 1M items x 16 (ORT 1.32, CPU, 1 thread, shared machine):
file 122 / 92 / 80 MB, session RSS 132 / 163 / 102 MB, median CPU per batch-1 call 4.7 / 4.5 / 3.2 ms
for float32 / float16 / int8. The history embedding the query tower gathers from (tied to the item
matrix in MLPStudent) stays float32: that is the rest of the int8 file.
Reduced graphs are checked against the float32 PyTorch model with an error bound derived from the
precision and a minimum top-k overlap (`check_parity`), not with the float32 tolerance.
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
from training.teacher.protocol import HasOnnxGraph, Teacher

log = logging.getLogger(__name__)

Side = Literal["student", "teacher"]
ItemPrecision = Literal["float32", "float16", "int8"]
MATRIX_NAME = "item_vectors_t"  # the topk graph's item matrix; reduced forms keep it as a name prefix
SCORE_NODE = "score_all_items"
ALL_SCORES = "all_scores"  # the topk graph's [batch, n_items] scores, before the TopK
FLOAT16_MAX = 65504.0


class ParityError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing may be published."""


class _UserVectors(nn.Module):
    """Wraps the query tower as `forward(*graph inputs)` so torch.onnx.export traces it alone."""

    def __init__(self, model: nn.Module, side: Side):
        super().__init__()
        self.model: Any = model
        self.side: Side = side

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _query_vectors(self.model, self.side, *inputs)


def _has_user_input(model: Any, side: Side) -> bool:
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
    if _has_user_input(model, side):
        user, history = inputs
        return teacher.query_vectors(user, history)
    return teacher.query_vectors(None, inputs[-1])


def _input_specs(model: Any, side: Side, with_k: bool) -> dict[str, TensorSpec]:
    specs: dict[str, TensorSpec] = {}
    if _has_user_input(model, side):
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
    if _has_user_input(model, side):
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
    if _has_user_input(model, side):
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


def _int8_block_size(dim: int) -> int:
    """MatMulNBits blocks run along the vector (K) axis and must be a power of two >= 16: one block
    covering the whole vector gives every item its own scale (K is zero-padded up to the block)."""
    return max(16, 1 << (dim - 1).bit_length())


def _float16_matrix(model: onnx.ModelProto) -> onnx.ModelProto:
    """The item matrix stored as float16, Cast back to float32 under its old name before the MatMul."""
    graph = model.graph
    (init,) = [t for t in graph.initializer if t.name == MATRIX_NAME]
    matrix = numpy_helper.to_array(init)
    if not np.isfinite(matrix).all() or np.abs(matrix).max(initial=0.0) > FLOAT16_MAX:
        raise ParityError(  # the float16 graph could not reproduce this model: publish nothing
            f"export.item_precision = 'float16': item vectors reach {np.abs(matrix).max():.3g}, "
            f"beyond float16's range ({FLOAT16_MAX:g}); use 'int8' or 'float32'"
        )
    graph.initializer.remove(init)
    graph.initializer.append(numpy_helper.from_array(matrix.astype(np.float16), f"{MATRIX_NAME}_f16"))
    cast = helper.make_node(
        "Cast", [f"{MATRIX_NAME}_f16"], [MATRIX_NAME], name="item_vectors_to_float32", to=TensorProto.FLOAT
    )
    graph.node.insert(0, cast)
    return model


def _nbits_quantizer() -> Any:
    """onnxruntime's MatMulNBitsQuantizer, imported without its side effect: the module calls
    logging.basicConfig(level=INFO) at import, which would turn on INFO logs process-wide."""
    root = logging.getLogger()
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)  # basicConfig does nothing once the root logger has a handler
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        if guard is not None:
            root.removeHandler(guard)
    return MatMulNBitsQuantizer


def _int8_matrix(model: onnx.ModelProto, dim: int) -> onnx.ModelProto:
    """onnxruntime's weight quantizer on the scoring MatMul only (the query tower stays float32)."""
    quant_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quant_log.level
    quant_log.setLevel(logging.WARNING)  # it logs every node at INFO
    try:
        quantizer = _nbits_quantizer()(
            model,
            bits=8,
            block_size=_int8_block_size(dim),
            is_symmetric=True,
            accuracy_level=4,  # int8 x int8 kernel; the float fallback dequantizes B on every call
            nodes_to_include=[SCORE_NODE],
        )
        quantizer.process()
    finally:
        quant_log.setLevel(level)
    out: onnx.ModelProto = quantizer.model.model
    if not any(n.op_type == "MatMulNBits" for n in out.graph.node):
        raise RuntimeError(f"onnxruntime's MatMulNBitsQuantizer left '{SCORE_NODE}' unquantized")
    return out


def reduce_topk_graph(path: Path, precision: ItemPrecision, dim: int) -> None:
    """Rewrite the topk graph at `path` in place with its item matrix in `precision`.

    Inputs, outputs and their names do not change, so the service runs it as the float32 graph.
    """
    if precision == "float32":
        return
    model = onnx.load(str(path))
    model = _float16_matrix(model) if precision == "float16" else _int8_matrix(model, dim)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


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
            inputs=_input_specs(model, side, with_k=True),
            outputs={
                SCORES_OUTPUT: TensorSpec(dtype="float32", shape=["batch", "k"]),
                INDICES_OUTPUT: TensorSpec(dtype="int64", shape=["batch", "k"]),
            },
        ),
        user=OnnxGraph(
            file=user_file,
            inputs=_input_specs(model, side, with_k=False),
            outputs={USER_VECTOR_OUTPUT: vector},
        ),
        item_vectors=items_file,
        dim=int(items.shape[1]),
        history_len=int(model.history_len),
        padding_value=int(model.padding_value),
        parameters=int(parameters),
        oov_user=int(model.oov_user) if _has_user_input(model, side) else None,
        item_precision=item_precision,
        known_users=known_file,
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


def _feeds(card: ModelCard, inputs: ParityInputs, rows: slice) -> dict[str, np.ndarray]:
    feeds = {HISTORY_INPUT: inputs.histories[rows]}
    if card.oov_user is not None:  # the graph reads a user index
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
    min_overlap: float = 0.9,
) -> dict[str, Any]:
    """Compare the exported graphs with PyTorch on every row; raise ParityError on any failure.

    The top-k must hold the same items in the same order. Where orders differ only between items
    whose PyTorch scores are within `atol` (near-ties that float rounding may swap), the ONNX list is
    still a correct top-k: accepted, and counted as `tie_swaps`. Scores and user vectors must agree
    within `atol`. A card with a reduced `item_precision` is checked by `check_reduced_parity`
    (`min_overlap` applies there only).
    """
    if card.item_precision != "float32":
        return check_reduced_parity(model, side, card, out_dir, inputs, k, atol, min_overlap, batch_size)
    out_dir = Path(out_dir)
    topk_sess, user_sess = ort_session(out_dir / card.topk.file), ort_session(out_dir / card.user.file)
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
        feeds = _feeds(card, inputs, rows)
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


def score_error_bound(precision: ItemPrecision, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[B, m]: twice the largest |reduced - float32| score the precision allows for each pair.

    queries [B, D] float32 user vectors, items [B, m, D] the item vectors scored against each.
    float16 rounds each item element to nearest: relative error <= 2^-11 (absolute 2^-25 below the
    normal range). int8 (MatMulNBits, symmetric, accuracy_level 4) rounds each item row on a grid of
    step max|row|/127 and, inside the kernel, each query row on a grid of step max|query|/127 (per
    block, at most the row's): error <= |a|_1 step_b/2 + |b|_1 step_a/2 + D step_a step_b/4. The
    factor 2 leaves room for the kernel's own rounding choices (measured: at most 0.79 of the
    undoubled bound on random 20,000-item catalogs, D = 8, 16, 24).
    """
    a = np.abs(queries, dtype=np.float64)[:, None, :]  # (B, 1, D)
    b = np.abs(items, dtype=np.float64)  # (B, m, D)
    if precision == "float16":
        return 2.0 * (a * (b * 2.0**-11 + 2.0**-25)).sum(-1)
    if precision == "int8":
        step_a, step_b = a.max(-1) / 127.0, b.max(-1) / 127.0  # (B, 1), (B, m)
        dim = queries.shape[1]
        return 2.0 * (a.sum(-1) * step_b / 2 + b.sum(-1) * step_a / 2 + dim * step_a * step_b / 4)
    raise ValueError(f"no error bound for item precision {precision!r}")


def topk_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float [B]: |a_row ∩ b_row| / k for two [B, k] index lists."""
    if a.shape != b.shape:
        raise ValueError(f"top-k lists of shapes {a.shape} and {b.shape}")
    k = max(a.shape[1], 1)
    return np.array([len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(a, b, strict=True)])


def _within_bound(
    precision: ItemPrecision,
    items: np.ndarray,
    slack: np.ndarray,
    ref_vec: np.ndarray,
    ref_scores: np.ndarray,
    ref_idx: np.ndarray,
    scores: np.ndarray,
    idx: np.ndarray,
) -> tuple[np.ndarray, float]:
    """bool [B]: rows the precision explains, and the largest |graph score - float32 score|.

    A row is explained when its k items are distinct, each returned score is within its bound of
    that item's float32 score, and each returned item's float32 score is within its own bound plus
    the largest bound among the float32 top-k of the float32 k-th score (only then could rounding
    have let it displace a float32 top-k item).
    """
    true_of_graph = np.take_along_axis(ref_scores, idx, axis=1)  # float32 scores of the returned items
    err_graph = score_error_bound(precision, ref_vec, items[idx]) + slack[idx]  # (B, k)
    err_top = score_error_bound(precision, ref_vec, items[ref_idx]) + slack[ref_idx]  # (B, k)
    diff = np.abs(scores - true_of_graph)
    kth = np.take_along_axis(ref_scores, ref_idx[:, -1:], axis=1)  # (B, 1): float32 k-th best score
    displaced_ok = true_of_graph >= kth - err_graph - err_top.max(axis=1, keepdims=True)
    unique = np.array([len(set(r.tolist())) == idx.shape[1] for r in idx])
    ok = (diff <= err_graph).all(axis=1) & displaced_ok.all(axis=1) & unique
    return ok, float(np.max(diff, initial=0.0))


def check_reduced_parity(
    model: Any,
    side: Side,
    card: ModelCard,
    out_dir: Path,
    inputs: ParityInputs,
    k: int,
    atol: float,
    min_overlap: float,
    batch_size: int = 256,
) -> dict[str, Any]:
    """A reduced-precision topk graph against the float32 PyTorch model; ParityError on failure.

    Small reorderings are what a reduced precision does, so they are measured, not failed: the
    mean top-k overlap with the float32 top-k is recorded and must reach `min_overlap`. What must
    hold on every row is what the precision guarantees (`score_error_bound`, plus `atol` for the
    float32 query tower): each returned score is its item's float32 score within the bound, and an
    item can displace a float32 top-k item only if their float32 scores are within their two bounds.
    A wrong matrix, a wrong scale or a broken graph breaks these. The user graph stays float32 and
    must still agree within `atol`.
    """
    precision: ItemPrecision = card.item_precision
    out_dir = Path(out_dir)
    topk_sess, user_sess = ort_session(out_dir / card.topk.file), ort_session(out_dir / card.user.file)
    items = item_matrix(model)
    k = min(k, items.shape[0])
    n = len(inputs.histories)
    # The query tower's own float32 error (<= atol per element) moves a score by <= atol |b|_1.
    slack = atol * (1.0 + np.abs(items).sum(1))  # (N,)
    max_score_diff = max_vector_diff = 0.0
    exact_rows = 0
    overlaps: list[np.ndarray] = []
    bad_rows: list[int] = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        ref_vec = torch_user_vectors(model, side, inputs.users[rows], inputs.histories[rows])
        ref_scores = ref_vec @ items.T  # (B, N)
        ref_idx = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
        feeds = _feeds(card, inputs, rows)
        (vec,) = user_sess.run([USER_VECTOR_OUTPUT], feeds)
        scores, idx = topk_sess.run(
            [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
        )
        max_vector_diff = max(max_vector_diff, float(np.max(np.abs(vec - ref_vec), initial=0.0)))
        if idx.shape != ref_idx.shape or idx.min(initial=0) < 0 or idx.max(initial=0) >= len(items):
            raise ParityError(
                f"{side} {precision} topk graph returned indices {idx.shape} outside the catalog"
            )
        ok, diff = _within_bound(precision, items, slack, ref_vec, ref_scores, ref_idx, scores, idx)
        max_score_diff = max(max_score_diff, diff)
        bad_rows += [start + int(r) for r in np.flatnonzero(~ok)]
        overlaps.append(topk_overlap(idx, ref_idx))
        exact_rows += int((idx == ref_idx).all(axis=1).sum())
    overlap = np.concatenate(overlaps) if overlaps else np.ones(1)
    mean_overlap = float(overlap.mean())
    result: dict[str, Any] = {
        "rows": n,
        "k": k,
        "atol": atol,
        "item_precision": precision,
        "exact_topk_rows": exact_rows,
        "mismatched_rows": len(bad_rows),  # rows breaking the precision's error bound
        f"overlap@{k}": mean_overlap,
        f"min_row_overlap@{k}": float(overlap.min()),
        "min_overlap": min_overlap,
        "max_abs_score_diff": max_score_diff,  # vs the float32 score of the same item
        "max_abs_user_vector_diff": max_vector_diff,
    }
    result["passed"] = not bad_rows and mean_overlap >= min_overlap and max_vector_diff <= atol
    log.info("%s parity (%s item matrix): %s", side, precision, result)
    if not result["passed"]:
        raise ParityError(
            f"{side} ONNX parity ({precision} item matrix) failed on {n} rows: top-{k} overlap with "
            f"float32 {mean_overlap:.3f} (minimum {min_overlap}), {len(bad_rows)} rows outside "
            f"the {precision} error bound (first rows {bad_rows[:5]}), max user-vector diff "
            f"{max_vector_diff:.3g} (atol {atol})"
        )
    return result
