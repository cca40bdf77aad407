"""A reduced precision for the topk graph's item matrix (`export.item_precision`, student only).

The user graph, the .npy and the graph's inputs and outputs stay float32 and unchanged, so the
service loads either the same way:
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
Reduced graphs are checked against the float32 PyTorch model with the error bound derived here
(`score_error_bound`) and a minimum top-k overlap (training/export/parity.py), not with the float32
tolerance. What the precision cost is then measured on the published graph for the report
(`precision_report`): both graphs ranked over the full catalog for the same test users, their
overlap, sizes and batch-1 latency.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.agreement import overlap_at_k
from core.manifest import HISTORY_INPUT, INDICES_OUTPUT, K_INPUT, SCORES_OUTPUT, ModelCard
from training.config import PipelineConfig
from training.data.split import validation_split
from training.data.types import Split
from training.evaluate.models import evaluate_models
from training.evaluate.ranking import ScoreFn, TestHistory, padded_histories
from training.export.graphs import (
    ALL_SCORES,
    MATRIX_NAME,
    SCORE_NODE,
    ItemPrecision,
    ParityError,
    build_topk_graph,
    item_matrix_bytes,
    ort_session,
)

FLOAT16_MAX = 65504.0


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
    """float [B]: core.agreement.overlap_at_k of each row of two [B, k] index lists."""
    if a.shape != b.shape:
        raise ValueError(f"top-k lists of shapes {a.shape} and {b.shape}")
    k = max(a.shape[1], 1)
    return np.array([overlap_at_k(x.tolist(), y.tolist(), k) for x, y in zip(a, b, strict=True)])


def precision_report_for(cfg: PipelineConfig, split: Split, stage: Path, card: Any) -> dict[str, Any]:
    """`precision_report` on the test users evaluate_all ranked (eval.max_users)."""
    e = cfg.eval
    users = validation_split(split, e.max_users, cfg.seed)
    return precision_report(
        users, stage, card, e.k, e.recall_k, e.batch_size, seed=cfg.seed, test_history=e.test_history
    )


def expose_all_scores(path: Path, out: Path) -> None:
    """Copy a topk graph to `out` with its [batch, n_items] scores (the TopK's input) as an output.

    Ranking metrics need every item's score; asking the TopK for k = n_items would sort the whole
    catalog per user. The nodes are the graph's own, so the scores are the ones it ranks by.
    """
    model = onnx.load(str(path))
    model.graph.output.append(
        helper.make_tensor_value_info(ALL_SCORES, TensorProto.FLOAT, ["batch", "n_items"])
    )
    onnx.save(model, str(out))


def all_scores_fn(session: Any, n_items: int, max_cells: int = 1 << 24) -> ScoreFn:
    """Scores [B, n_items] from a graph made by `expose_all_scores`, at most `max_cells` per run."""

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        out = np.empty((len(histories), n_items), np.float32)
        step = max(1, max_cells // max(n_items, 1))
        for start in range(0, len(histories), step):
            rows = slice(start, start + step)
            (out[rows],) = session.run([ALL_SCORES], {HISTORY_INPUT: histories[rows], K_INPUT: np.array([1])})
        return out

    return score


def topk_latency(
    sessions: Mapping[str, Any], histories: np.ndarray, k: int, warmup: int = 20
) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per call of each topk graph, batch 1, one row at a time.

    The graphs take turns on every row, so a busy machine slows them alike. CPU time
    (time.process_time) is the steadier figure when other work shares the cores.
    """
    k_feed = np.array([k], np.int64)
    wall: dict[str, list[float]] = {name: [] for name in sessions}
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    for sess in sessions.values():  # first calls allocate and page in the matrix
        for row in histories[:1].repeat(warmup, axis=0):
            sess.run([SCORES_OUTPUT, INDICES_OUTPUT], {HISTORY_INPUT: row[None, :], K_INPUT: k_feed})
    for row in histories:
        feed = {HISTORY_INPUT: row[None, :], K_INPUT: k_feed}
        for name, sess in sessions.items():
            w0, c0 = time.perf_counter(), time.process_time()
            sess.run([SCORES_OUTPUT, INDICES_OUTPUT], feed)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "median_ms": 1e3 * float(np.median(wall[name])) if wall[name] else float("nan"),
            "cpu_median_ms": 1e3 * float(np.median(cpu[name])) if cpu[name] else float("nan"),
            "calls": len(wall[name]),
        }
        for name in sessions
    }


def precision_report(
    split: Split,
    stage: Path,
    card: ModelCard,
    k: int,
    recall_k: int,
    batch_size: int,
    latency_calls: int = 300,
    seed: int = 0,
    test_history: TestHistory = "train+valid",
) -> dict[str, Any]:
    """The published reduced-precision student topk graph against the same graph in float32.

    Both graphs are ranked over the full catalog for the same test users (the float32 one is
    rebuilt from the published user graph and item_vectors .npy, as export builds it), so the
    delta is what the precision costs. Also: top-k overlap between the two, item-matrix bytes in
    the file and after onnxruntime's load-time graph optimisation (float16 is folded back to
    float32 there), file sizes, and median batch-1, one-thread latency of both, measured in this run.
    """
    import onnxruntime

    stage = Path(stage)
    precision = card.item_precision
    items = np.load(stage / card.item_vectors, allow_pickle=False)
    with tempfile.TemporaryDirectory(prefix="recdistill-precision-") as tmp:
        graphs = {"float32": Path(tmp) / "float32_topk.onnx", "reduced": stage / card.topk.file}
        build_topk_graph(stage / card.user.file, items, graphs["float32"])
        sessions, loaded_bytes = {}, {}
        for name, path in graphs.items():
            optimized = Path(tmp) / f"{name}_optimized.onnx"
            sessions[name] = ort_session(path, optimized_path=optimized)
            loaded_bytes[name] = item_matrix_bytes(onnx.load(str(optimized)))
        file_bytes = {name: path.stat().st_size for name, path in graphs.items()}
        matrix_bytes = {name: item_matrix_bytes(onnx.load(str(path))) for name, path in graphs.items()}
        models = {}
        for name, path in graphs.items():
            expose_all_scores(path, Path(tmp) / f"{name}_all_scores.onnx")
            scorer = all_scores_fn(ort_session(Path(tmp) / f"{name}_all_scores.onnx"), split.n_items)
            models[name] = (scorer, card.history_len)
        metrics, tops = evaluate_models(split, models, k, recall_k, batch_size, test_history=test_history)
        del models  # free their two sessions (each holds the matrix) before timing
        users = np.random.default_rng(seed).permutation(split.test_users)[:latency_calls]
        latency = topk_latency(sessions, padded_histories(split, users, card.history_len), k)
    delta = {m: metrics["reduced"][m] - v for m, v in metrics["float32"].items() if m != "users"}
    overlap = topk_overlap(tops["reduced"], tops["float32"])
    return {
        "precision": precision,
        "test": {"float32": metrics["float32"], "reduced": metrics["reduced"], "delta": delta},
        f"overlap@{k}": float(overlap.mean()) if len(overlap) else None,
        "users": len(overlap),
        "item_matrix_bytes": matrix_bytes,
        "item_matrix_bytes_after_ort_load": loaded_bytes,
        "topk_file_bytes": file_bytes,
        "latency": latency,
        "latency_setup": f"onnxruntime {onnxruntime.__version__} CPU, batch 1, 1 thread, k={k}, "
        f"median over {int(latency['float32']['calls'])} test histories, graphs alternating",
    }
