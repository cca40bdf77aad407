"""Top-k with the one tie rule both wings use, and recall of an approximate top-k against the exact one.

The tie rule: score descending, ties broken by the lower item index. The exported top-k graph, the
service's exact and filtered paths, the ANN index's refills, offline evaluation and the benchmarks
all rank this way, so two answers that differ only in how they break a tie never count as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k_of(cand: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, scores float32): the best k of the candidate ids `cand` by `scores` (same length)."""
    if k < len(cand):
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((cand[part], -scores[part]))]  # score desc, ties by index
    else:
        order = np.lexsort((cand, -scores))
    return cand[order].astype(np.int64), scores[order].astype(np.float32)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [B, k], scores [B, k]): the k best columns of each row of `scores` [B, N]."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_s = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_s), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(part_s, order, axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 [B, k]: the k best items per row, best first (ties broken by lower index)."""
    return top_k_rows(scores, k)[0]


def exact_topk(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    block: int = 256,
    excludes: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32 [B, k], indices int64 [B, k]) of `queries @ items.T`, best first, by the tie rule.

    Blocked over queries so a 1M-item catalogue never needs a [B, n_items] matrix for all B at once.
    `excludes[row]` (optional) lists item indices that row may not return (scored -inf).
    """
    queries = np.ascontiguousarray(queries, np.float32)
    k = min(k, len(items))
    out_s = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ items.T  # (b, N)
        if excludes is not None:
            for row, ex in enumerate(excludes[start : start + block]):
                scores[row, ex] = -np.inf
        out_i[start : start + block], out_s[start : start + block] = top_k_rows(scores, k)
    return out_s, out_i


def recall_at_k(
    approx: Sequence[Sequence[int]] | np.ndarray, exact: Sequence[Sequence[int]] | np.ndarray
) -> float:
    """Mean over rows of |approx_row ∩ exact_row| / |exact_row| (an empty exact row counts as 1 item;
    faiss's -1 padding never matches)."""
    if len(approx) != len(exact):
        raise ValueError(f"{len(approx)} approximate rows vs {len(exact)} exact rows")
    if len(exact) == 0:
        raise ValueError("no rows to compare")
    hits = [
        len(set(np.asarray(a).tolist()) & set(np.asarray(e).tolist())) / max(1, len(e))
        for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(hits))
