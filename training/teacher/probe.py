"""Every query shape the later stages feed a teacher, tried at import, in seconds, before anything trains.

Evaluation trims a batch's leading padding (histories shorter than `history_len`), publish parity
feeds full and half-length histories in batches of up to 256, the service batches requests: a query
must take any batch size and every history length 1 … history_len. A graph traced with a length
baked in (a Reshape to a constant length, as nn.MultiheadAttention's traced graph has) runs at that
one length only; found at publish, that costs the whole training and ends in an onnxruntime
traceback. So each length is tried here with one history and with many, and a failure names the
lengths that fail.

A `python:` module is exported to ONNX first and the graph is held to the module at each shape (the
parity publish will check); an `onnx:`/`tables:` teacher already is its graph. Either way the graph's
bytes come back: with the item matrix and the id maps they are what decides the teacher's outputs
(training/teacher/imported.py keys the teacher's digest on them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from core.errors import one_line
from core.manifest import HISTORY_INPUT, USER_INPUT, USER_VECTOR_OUTPUT
from training.export.graphs import export_user_graph, torch_user_vectors
from training.teacher.spec import TeacherImportError

ERROR_CHARS = 300  # of an exporter's or onnxruntime's message, in our one line
# "Many" histories, as evaluation, parity and the service batch them: any number other than the 2 the
# export traces with shows a batch size baked in, and 16 keeps the sweep through a user's module to
# seconds (pmixer's SASRec in PyTorch: 0.23 CPU s per batch of 64 at length 50, 200 batches a sweep).
PROBE_ROWS = 16
Run = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users [B], histories [B, L]) -> vectors [B, D]

BAKED_LENGTH_HINT = (
    "evaluation, publish parity and the service feed histories of every length 1 … {L} in batches "
    "of any size; a graph traced with the length as a constant (a Reshape, as nn.MultiheadAttention's "
    "has) runs at one length only: left-pad the history to history_len inside query_vectors "
    "(docs/own-teacher.md, 'What your module receives')"
)


def spans(values: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7": the lengths that failed, short."""
    out: list[str] = []
    for v in sorted(set(values)):
        if out and int(out[-1].split("-")[-1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)


def probe_batch(
    rng: np.random.Generator, rows: int, length: int, n_items: int, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """(users [rows], histories [rows, length]) left-padded with n_items: the first row full, the rest
    of random lengths 0 … length (all-padding rows included), users random with the OOV row."""
    hist = np.full((rows, length), n_items, np.int64)
    for row, n in enumerate([length, *rng.integers(0, length + 1, rows - 1)]):
        if n:
            hist[row, length - n :] = rng.integers(0, max(n_items, 1), n)
    return rng.integers(0, n_users + 1, rows).astype(np.int64), hist


def check_vectors(out: np.ndarray, rows: int, dim: int, where: str, what: str) -> None:
    """One query vector per history, of the item matrix's dim, finite; else TeacherImportError."""
    if out.ndim == 3:
        raise TeacherImportError(
            f"{where}: {what} returns a sequence of {out.shape[1]} vectors per history (shape "
            f"{tuple(out.shape)}); one vector per history expected (e.g. the last position's)"
        )
    if out.ndim != 2 or out.shape[0] != rows or out.shape[1] != dim:
        raise TeacherImportError(
            f"{where}: {what} outputs vectors of shape {tuple(out.shape)[1:]}, the item matrix has dim {dim}"
        )
    if not np.isfinite(out).all():
        raise TeacherImportError(f"{where}: {what} outputs NaN or Inf")


def check_shapes(teacher: Any, where: str, run: Run, reference: Run | None, atol: float, seed: int) -> dict:
    """Run the graph (`run`) at every length 1 … history_len with 1 and PROBE_ROWS histories; with a
    `reference` (the torch module) the graph must also agree with it within `atol`.

    Shape and NaN errors stop at once; failures to run and disagreements are gathered over every
    length first, so the message names all the lengths that fail.
    """
    length_max = max(int(teacher.history_len), 1)
    rng = np.random.default_rng(seed)
    failed: dict[int, str] = {}
    max_diff = 0.0
    for length in range(length_max, 0, -1):  # the full length first: the one the service feeds
        for rows in (1, PROBE_ROWS):
            users, hist = probe_batch(rng, rows, length, teacher.n_items, teacher.n_users)
            ref = None
            if reference is not None:
                try:
                    ref = reference(users, hist)
                except Exception as exc:  # the user's module raises whatever it raises
                    failed.setdefault(
                        length, f"the module's query_vectors fails: {one_line(exc, ERROR_CHARS)}"
                    )
                    continue
                check_vectors(ref, rows, teacher.dim, where, "the query")
            try:
                got = run(users, hist)
            except TeacherImportError:
                raise
            except Exception as exc:  # onnxruntime raises its own types
                failed.setdefault(length, f"the query graph fails: {one_line(exc, ERROR_CHARS)}")
                continue
            check_vectors(got, rows, teacher.dim, where, "the query")
            if ref is not None:
                diff = float(np.max(np.abs(got - ref), initial=0.0))
                max_diff = max(max_diff, diff)
                if diff > atol:
                    failed.setdefault(
                        length, f"the exported graph differs from the module by {diff:.3g} (atol {atol:g})"
                    )
    if failed:
        lengths = sorted(failed)
        ok = [n for n in range(1, length_max + 1) if n not in failed]
        if not ok:  # nothing to do with the length: say what fails
            raise TeacherImportError(f"{where}: {failed[length_max]}")
        raise TeacherImportError(
            f"{where}: fails on histories of length {spans(lengths)} of 1 … {length_max} (works at "
            f"{spans(ok)}). At length {lengths[0]}: {failed[lengths[0]]}. {BAKED_LENGTH_HINT.format(L=length_max)}"
        )
    return {
        "history_lengths": f"1-{length_max}",
        "batch_sizes": [1, PROBE_ROWS],
        "max_abs_user_vector_diff": max_diff,
    }


def _session(graph: bytes) -> Any:
    """A quiet one-thread onnxruntime session: a failing run is reported once, as our one line."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.log_severity_level = 4  # its own ERROR lines would repeat the exception we report
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def graph_runner(graph: bytes, takes_user_id: bool) -> Run:
    """The query graph as a Run: the service's inputs in, `user_vector` out."""
    session = _session(graph)

    def run(users: np.ndarray, hist: np.ndarray) -> np.ndarray:
        feeds = {HISTORY_INPUT: hist} | ({USER_INPUT: users} if takes_user_id else {})
        (out,) = session.run([USER_VECTOR_OUTPUT], feeds)
        return np.asarray(out)

    return run


def probe_module(teacher: Any, where: str, opset: int, atol: float, seed: int) -> tuple[bytes, dict]:
    """A `python:` teacher: the module at full length, then exported and held to itself at every shape."""

    def reference(users: np.ndarray, hist: np.ndarray) -> np.ndarray:
        return torch_user_vectors(teacher, "teacher", users, hist)

    users, hist = probe_batch(np.random.default_rng(seed), PROBE_ROWS, max(teacher.history_len, 1),
                              teacher.n_items, teacher.n_users)  # fmt: skip
    try:
        first = reference(users, hist)
    except Exception as exc:  # the user's module
        raise TeacherImportError(
            f"{where}: the query fails on a probe batch: {one_line(exc, ERROR_CHARS)}"
        ) from exc
    check_vectors(first, PROBE_ROWS, teacher.dim, where, "the query")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher_user.onnx"
        try:
            export_user_graph(teacher, "teacher", path, opset)
        except Exception as exc:  # the exporter raises many types
            raise TeacherImportError(
                f"{where}: does not export to ONNX: {one_line(exc, ERROR_CHARS)}"
            ) from exc
        graph = path.read_bytes()
    try:
        run = graph_runner(graph, teacher.takes_user_id)
    except Exception as exc:  # onnxruntime refuses the graph
        raise TeacherImportError(
            f"{where}: the exported graph does not load: {one_line(exc, ERROR_CHARS)}"
        ) from exc
    return graph, check_shapes(teacher, where, run, reference, atol, seed)


def probe_graph(teacher: Any, where: str, seed: int) -> tuple[bytes, dict]:
    """An `onnx:`/`tables:` teacher: its (rebased) query graph at every shape."""
    graph: onnx.ModelProto = teacher.onnx_user_graph()
    data = graph.SerializeToString()

    def run(users: np.ndarray, hist: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            user = torch.from_numpy(users) if teacher.takes_user_id else None
            return teacher.query_vectors(user, torch.from_numpy(hist)).numpy()

    return data, check_shapes(teacher, where, run, None, 0.0, seed)
