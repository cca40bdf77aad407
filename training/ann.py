"""ANN index over the student's item vectors, built at export and measured before it is published.

Scores are dot products, so the index uses faiss's inner-product metric (HNSW-Flat or IVF-Flat:
both keep the full float32 vectors, so the scores they return are the exact dot products and only
the candidate set is approximate). The search breadth (HNSW `efSearch`, IVF `nprobe`) is tuned on
one set of users until recall@k against the exact top-k reaches `min_recall`, then recall and the
latency of both paths are measured on a *different* set of >= 1,000 users and written into the
manifest's `Retrieval`. A version whose index misses `min_recall` is not published.

Numpy + faiss only (no torch): the caller passes the user vectors the student produced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.manifest import Retrieval

log = logging.getLogger(__name__)

AnnKind = Literal["hnsw", "ivf"]
INDEX_FILE = "student_ann.faiss"
# Search breadths tried in order; the first reaching min_recall on the tuning users is kept.
SEARCH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


class AnnError(RuntimeError):
    """The index cannot be built, or misses the recall target: the version must not be published."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - the train extra installs faiss-cpu
        raise AnnError("retrieval 'hnsw'/'ivf' needs faiss-cpu (pip install 'recdistill[ann]')") from exc
    return faiss


def exact_topk(queries: np.ndarray, items: np.ndarray, k: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) [B, k], best first, ties by lower index: the reference the index is judged by.

    Blocked over queries so a 1M-item catalogue never needs a [B, n_items] matrix for all B at once.
    """
    queries = np.ascontiguousarray(queries, np.float32)
    k = min(k, len(items))
    out_s = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ items.T  # (b, N)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_s = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_s), axis=1)
        out_i[start : start + block] = np.take_along_axis(part, order, axis=1)
        out_s[start : start + block] = np.take_along_axis(part_s, order, axis=1)
    return out_s, out_i


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx_row ∩ exact_row| / |exact_row| (faiss's -1 padding never matches)."""
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"{approx.shape[0]} approximate rows vs {exact.shape[0]} exact rows")
    if exact.size == 0:
        raise ValueError("no rows to compare")
    hits = [len(set(a.tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits))


def build_index(
    items: np.ndarray,
    kind: AnnKind,
    *,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ivf_nlist: int | None = None,
    threads: int = 1,
    seed: int = 0,
) -> Any:
    """A faiss inner-product index holding every item, row i = item index i.

    IVF's nlist defaults to ~4·sqrt(n_items) (faiss's rule of thumb), trained on at most 256·nlist
    items sampled with `seed`.
    """
    faiss = _faiss()
    faiss.omp_set_num_threads(threads)
    items = np.ascontiguousarray(items, np.float32)
    n, dim = items.shape
    if n == 0:
        raise AnnError("cannot build an index over an empty catalogue")
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    elif kind == "ivf":
        nlist = ivf_nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = items if n <= 256 * nlist else items[rng.choice(n, 256 * nlist, replace=False)]
        index.cp.seed = seed
        index.train(sample)
    else:
        raise AnnError(f"unknown ANN kind {kind!r}, expected 'hnsw' or 'ivf'")
    index.add(items)
    return index


def set_breadth(index: Any, kind: AnnKind, value: int) -> None:
    """efSearch for HNSW, nprobe for IVF."""
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    else:
        index.nprobe = int(min(value, index.nlist))


def _search(index: Any, queries: np.ndarray, k: int) -> np.ndarray:
    _, labels = index.search(np.ascontiguousarray(queries, np.float32), k)
    return labels


def tune_breadth(
    index: Any, kind: AnnKind, queries: np.ndarray, exact: np.ndarray, min_recall: float, ladder: Sequence[int] = SEARCH_LADDER
) -> tuple[int, float]:
    """The smallest breadth on the ladder whose recall@k on `queries` reaches min_recall."""
    k = exact.shape[1]
    recall = 0.0
    for value in ladder:
        if kind == "hnsw" and value < k:
            continue
        set_breadth(index, kind, value)
        recall = recall_at_k(_search(index, queries, k), exact)
        log.info("%s breadth %d: recall@%d %.4f", kind, value, k, recall)
        if recall >= min_recall:
            return value, recall
        if kind == "ivf" and value >= index.nlist:
            break
    raise AnnError(
        f"{kind} index reaches recall@{k} {recall:.4f} at the widest search tried, below {min_recall}; "
        "raise hnsw_m / ef_construction (or nlist) and export again"
    )


def latency_ms(fn: Any, queries: np.ndarray, repeats: int = 1) -> dict[str, float]:
    """Per-query latency (one query per call, as the service runs them): p50, p99, mean in ms."""
    times = []
    for _ in range(repeats):
        for q in queries:
            row = q[None, :]
            start = time.perf_counter()
            fn(row)
            times.append(time.perf_counter() - start)
    arr = np.asarray(times) * 1000.0
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean())}


def build_retrieval(
    out_dir: Path,
    items: np.ndarray,
    eval_queries: np.ndarray,
    tune_queries: np.ndarray,
    *,
    kind: AnnKind,
    k: int = 10,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int | None = None,
    ivf_nlist: int | None = None,
    min_recall: float = 0.95,
    latency_queries: int = 200,
    threads: int = 1,
    seed: int = 0,
) -> Retrieval:
    """Build, tune, measure and write the index into `out_dir`; return the manifest's `Retrieval`.

    `eval_queries` (>= 1,000 user vectors for the published figure) give recall@k and latency;
    `tune_queries` (other users) choose the breadth unless `ef_search` fixes it. Raises AnnError
    when the evaluation recall is below `min_recall`.
    """
    faiss = _faiss()
    items = np.ascontiguousarray(items, np.float32)
    k = min(k, len(items))
    t0 = time.perf_counter()
    index = build_index(
        items, kind, hnsw_m=hnsw_m, ef_construction=ef_construction, ivf_nlist=ivf_nlist, threads=threads, seed=seed
    )
    build_s = time.perf_counter() - t0
    if ef_search is None:
        _, exact_tune = exact_topk(tune_queries, items, k)
        breadth, tune_recall = tune_breadth(index, kind, tune_queries, exact_tune, min_recall)
    else:
        breadth, tune_recall = ef_search, None
        set_breadth(index, kind, breadth)
    _, exact_eval = exact_topk(eval_queries, items, k)
    recall = recall_at_k(_search(index, eval_queries, k), exact_eval)
    if recall < min_recall:
        raise AnnError(
            f"{kind} index: recall@{k} {recall:.4f} on {len(eval_queries)} users is below {min_recall} "
            f"(breadth {breadth}); raise ef_search or leave it unset to tune it"
        )
    faiss.omp_set_num_threads(1)  # latency as one service worker sees it
    sample = eval_queries[:latency_queries]
    exact_lat = latency_ms(lambda q: exact_topk(q, items, k), sample)
    ann_lat = latency_ms(lambda q: index.search(q, k), sample)
    faiss.write_index(index, str(Path(out_dir) / INDEX_FILE))
    params: dict[str, Any] = {
        "metric": "inner_product",
        "k": k,
        "n_items": int(len(items)),
        "dim": int(items.shape[1]),
        "faiss_version": faiss.__version__,
        "min_recall": min_recall,
    }
    if kind == "hnsw":
        params |= {"M": hnsw_m, "ef_construction": ef_construction, "ef_search": int(breadth)}
    else:
        params |= {"nlist": int(index.nlist), "nprobe": int(index.nprobe)}
    metrics = {
        f"recall@{k}": recall,
        "recall_users": float(len(eval_queries)),
        "build_seconds": build_s,
        "exact_p50_ms": exact_lat["p50"],
        "exact_p99_ms": exact_lat["p99"],
        "ann_p50_ms": ann_lat["p50"],
        "ann_p99_ms": ann_lat["p99"],
    }
    if tune_recall is not None:
        metrics["tune_recall"] = tune_recall
    log.info("retrieval %s: params %s metrics %s", kind, params, metrics)
    return Retrieval(kind=kind, index_file=INDEX_FILE, params=params, metrics=metrics)
