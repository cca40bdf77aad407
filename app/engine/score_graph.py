"""A one-node ONNX graph, `scores = user_vectors @ itemsᵀ`, built in memory from a side's float32 item
matrix, so onnxruntime scores the whole catalogue with that matrix prepacked once at load.

Why a graph and not numpy: numpy's BLAS repacks the 100k x 16 matrix on every call (perf: more CPU
in `sgemm_incopy` than in the multiply itself), ~0.12 ms a query in a batch of 17 against 0.03 ms
for onnxruntime, which packs a constant MatMul operand once. It is the same MatMul node over the same
matrix as the side's published top-k graph (training/export.py appends it to the user graph), so the
scores are that graph's, bit for bit (tests/app/engine/test_exact.py).

The service does not depend on the `onnx` package, so the ModelProto is written here with the
protobuf wire format, field numbers from onnx.proto (they never change): ~30 lines for one node.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

USER_VECTORS = "user_vectors"
SCORES = "scores"
_MATRIX = "items_t"
_FLOAT = 1  # TensorProto.FLOAT
_IR_VERSION = 8
_OPSET = 17


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _float_tensor_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto: a float tensor; int dims fixed, str dims symbolic."""
    shape = b"".join(
        _bytes(1, _bytes(2, d.encode()) if isinstance(d, str) else _int(1, d)) for d in dims
    )  # TensorShapeProto.dim: dim_param 2 / dim_value 1
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)  # TypeProto.Tensor: elem_type 1, shape 2
    return _bytes(1, name.encode()) + _bytes(2, _bytes(1, tensor_type))  # name 1, type 2 (tensor_type 1)


def score_model_bytes(items: np.ndarray) -> bytes:
    """The serialized ModelProto: input user_vectors [batch, dim] -> scores [batch, n_items]."""
    n_items, dim = items.shape
    matrix = np.ascontiguousarray(items.T, dtype="<f4")  # [dim, n_items]: MatMul's right operand
    initializer = (
        _int(1, dim)
        + _int(1, n_items)
        + _int(2, _FLOAT)
        + _bytes(8, _MATRIX.encode())
        + _bytes(9, matrix.tobytes())
    )  # TensorProto: dims 1, data_type 2, name 8, raw_data 9
    node = (
        _bytes(1, USER_VECTORS.encode())
        + _bytes(1, _MATRIX.encode())
        + _bytes(2, SCORES.encode())
        + _bytes(3, b"score_all_items")
        + _bytes(4, b"MatMul")
    )  # NodeProto: input 1, output 2, name 3, op_type 4
    graph = (
        _bytes(1, node)
        + _bytes(2, b"scores")
        + _bytes(5, initializer)
        + _bytes(11, _float_tensor_info(USER_VECTORS, ["batch", dim]))
        + _bytes(12, _float_tensor_info(SCORES, ["batch", n_items]))
    )  # GraphProto: node 1, name 2, initializer 5, input 11, output 12
    opset = _bytes(1, b"") + _int(2, _OPSET)  # OperatorSetIdProto: domain 1, version 2
    return _int(1, _IR_VERSION) + _bytes(8, opset) + _bytes(7, graph)  # ir_version 1, opset 8, graph 7


def score_session(items: np.ndarray, options: ort.SessionOptions) -> ort.InferenceSession:
    """An onnxruntime session of `score_model_bytes(items)` on the CPU."""
    return ort.InferenceSession(
        score_model_bytes(items), sess_options=options, providers=["CPUExecutionProvider"]
    )
