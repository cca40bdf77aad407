"""The plain path's exact top-k for a side whose item matrix is float32: the whole catalogue scored by
onnxruntime (app/engine/score_graph.py), each query's exclusions masked, the best k found without a
selection over every score.

Why not the side's published top-k graph (user vector, MatMul, TopK in one run), which gives the same
answer: at 100k items its TopK node cost ~0.25 ms of CPU a query on the one inference thread, whatever
the batch, and over HTTP that thread was the ceiling (bench/service.py; py-spy: ~85% of the thread
in that one call). Here the user graph gives the query vectors, the score graph (the same MatMul node
over the same float32 matrix, so the same scores bit for bit) scores every item, excluded items score
-inf, and `core.topk.top_k_rows_pruned` ranks only the groups of items that can hold the top k, with
the tie rule of ONNX TopK. Excluded items cost one scatter each, so a long exclusion list (the live
catalogue's unavailable items) no longer means fetching k + |excluded| from a graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from app.engine.score_graph import SCORES, USER_VECTORS
from core.topk import top_k_rows_pruned

# Scores held at once (float32): 26 MB, a whole batch of 64 (the batcher's default) at 100k items, 6 rows
# at 1M. Splitting a batch costs more than the memory saves: the MatMul's cost per row falls with the rows
# it runs on (100k items, one thread: ~275 us a row alone, ~42 in 12, ~36 in 25) and each block is
# one more run; at 100k items a batch of 25 ranked in one block instead of 13 + 12 took ~93 instead
# of ~112 us of CPU a query. Blocks are even (a batch of 7 at 1M items is 4 + 3, not 6 + 1).
SCORES_PER_BLOCK = 6_400_000


def _blocks(n_rows: int, n_items: int) -> list[slice]:
    most = max(1, SCORES_PER_BLOCK // max(n_items, 1))
    size = -(-n_rows // -(-n_rows // most))  # ceil(n_rows / number of blocks)
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def exact_top_k(
    scores_session: ort.InferenceSession,
    n_items: int,
    user_vectors: np.ndarray,
    ks: Sequence[int],
    excludes: Sequence[Sequence[np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query (indices int64, scores float32), best first by the tie rule: the min(k, allowed) best
    items by `scores_session` (user_vectors float32 [B, dim] -> [B, n_items]) outside every array of
    `excludes[i]` (the request's exclusions, the catalogue's unavailable items)."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for block in _blocks(len(ks), n_items):
        (scores,) = scores_session.run([SCORES], {USER_VECTORS: user_vectors[block]})  # (b, n_items)
        for row, parts in enumerate(excludes[block]):
            for exclude in parts:
                if len(exclude):
                    scores[row, exclude] = -np.inf
        found = top_k_rows_pruned(scores, min(max(ks[block]), n_items))
        for (idx, sc), k in zip(found, ks[block], strict=True):
            allowed = min(k, int(np.count_nonzero(sc > -np.inf)))  # -inf only where excluded
            out.append((idx[:allowed], sc[:allowed]))
    return out
