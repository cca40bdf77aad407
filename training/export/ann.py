"""ANN index over the student's item vectors, built at export and measured before it is published.

Scores are dot products. An index searches either on raw inner products or in L2 after the
standard MIPS -> L2 reduction (Bachrach et al., RecSys 2014): each item gets one extra coordinate
sqrt(max_norm² - |x|²), each query a 0, and the L2-nearest items are then exactly the largest dot
products. The manifest records the reduction as `params.transform = "mips_to_l2"`; the service
appends the 0 and recomputes exact dot products from the item matrix, so only the candidate set is
approximate. Defaults (`DEFAULT_SPACE`, overridable by `export.ann_space`) come from
bench/ann_index.py at 1M items, one search thread: first breadth on the ladder with recall@10 >= 0.95,
and its batch-1 latency (2 shared cores, so latencies are rough):
  vectors (dim)                   hnsw-ip          hnsw-mips            ivf-mips          ivf-ip
  trained student, 1M shop (16)   ef 24, 0.06 ms   ef 24, 0.03 ms       nprobe 8, 0.05    nprobe 16, 0.07
  clustered, long norm tail (16)  ef 32, 0.07 ms   0.94 at ef 2048      nprobe 64, 0.13   nprobe 192, 0.5
  clustered, long norm tail (32)  ef 48, 0.13 ms   -                    nprobe 48, 0.14   -
  random, untrained-like (16)     ef 32, 0.14 ms   ef 1024, 2.0 ms      nprobe 256, 0.69  -
  random (32)                     ef 128, 0.70 ms  -                    nprobe 768, 2.9   -
So HNSW searches inner products (after the reduction every query lies far from every item, and with
a long tail of item norms a graph walk toward it stalls) and IVF searches the reduction (its k-means
then partitions by direction *and* norm). HNSW is the robust choice for untrained or 32-d vectors;
on the trained 16-d student IVF is as fast at 73 MB instead of ~320 MB (M = 32) and builds in ~35 s
instead of 3-6 minutes. HNSW on inner products can stall the other way at a small M (3,000
clustered x 16, M = 16: recall@40 0.95 at efSearch 512): keep M at 32. (The earlier default, HNSW
over the reduction, needs ~30x the breadth on random, i.e. untrained, vectors: the likely cause of
the slow HTTP figure measured earlier on an untrained catalogue.)
The search breadth (HNSW `efSearch`, IVF `nprobe`) is tuned on one set of users until recall@k
against the exact top-k reaches `tune_recall` (0.98: headroom above the 0.95 gate), then recall
and the latency of both paths are measured on a *different* set of >= 1,000 users and written into
the manifest's `Retrieval`. A version whose index misses `min_recall` is not published.

Numpy + faiss only (no torch): the caller passes the user vectors the student produced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import NotPublished
from core.manifest import Retrieval
from core.topk import exact_topk, recall_at_k

log = logging.getLogger(__name__)

AnnKind = Literal["hnsw", "ivf"]
AnnSpace = Literal["inner_product", "mips_to_l2"]
# Where each kind searches by default (measured at 1M items, see the module docstring).
DEFAULT_SPACE: dict[str, AnnSpace] = {"hnsw": "inner_product", "ivf": "mips_to_l2"}
INDEX_FILE = "student_ann.faiss"
# Search breadths tried in order; the first reaching the tuning target on the tuning users is kept. The
# small rungs are for IVF over trained vectors (1M x 16: recall@10 0.99 already at nprobe 16); HNSW
# skips those below k.
SEARCH_LADDER = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


class AnnError(NotPublished, RuntimeError):
    """The index cannot be built, or misses the recall target: the version must not be published."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - the train extra installs faiss-cpu
        raise AnnError("retrieval 'hnsw'/'ivf' needs faiss-cpu (pip install 'recdistill[ann]')") from exc
    return faiss


def mips_items(items: np.ndarray) -> np.ndarray:
    """[n, d+1]: items with sqrt(max|x|² - |x|²) appended, so |q0 - x'|² = |q|² + max|x|² - 2 q·x."""
    sq = np.einsum("nd,nd->n", items, items, dtype=np.float64)
    extra = np.sqrt(np.maximum(sq.max() - sq, 0.0))
    return np.ascontiguousarray(np.hstack([items, extra[:, None]]), np.float32)


def mips_queries(queries: np.ndarray) -> np.ndarray:
    """[b, d+1]: queries with a 0 appended (the query side of the MIPS -> L2 reduction)."""
    queries = np.asarray(queries, np.float32)
    return np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]))


def build_index(
    items: np.ndarray,
    kind: AnnKind,
    *,
    space: AnnSpace | None = None,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ivf_nlist: int | None = None,
    threads: int = 1,
    seed: int = 0,
    train_per_cell: int = 256,
) -> Any:
    """A faiss index holding every item, row i = item index i, searched in `space` (None: the kind's
    DEFAULT_SPACE): on inner products of the items, or L2 over `mips_items(items)` (one more column).

    IVF's nlist defaults to ~4·sqrt(n_items) (faiss's rule of thumb), trained on at most
    `train_per_cell`·nlist items sampled with `seed` (faiss warns below 39 per cell).
    """
    faiss = _faiss()
    faiss.omp_set_num_threads(threads)
    items = np.ascontiguousarray(items, np.float32)
    n = len(items)
    if n == 0:
        raise AnnError("cannot build an index over an empty catalogue")
    if kind not in DEFAULT_SPACE:
        raise AnnError(f"unknown ANN kind {kind!r}, expected 'hnsw' or 'ivf'")
    space = space or DEFAULT_SPACE[kind]
    if space == "mips_to_l2":
        items = mips_items(items)
    elif space != "inner_product":
        raise AnnError(f"unknown ANN space {space!r}, expected 'inner_product' or 'mips_to_l2'")
    dim = items.shape[1]
    metric = faiss.METRIC_L2 if space == "mips_to_l2" else faiss.METRIC_INNER_PRODUCT
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, metric)
        index.hnsw.efConstruction = ef_construction
    else:
        nlist = ivf_nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatL2(dim) if space == "mips_to_l2" else faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        rng = np.random.default_rng(seed)
        cap = train_per_cell * nlist
        sample = items if n <= cap else items[rng.choice(n, cap, replace=False)]
        index.cp.seed = seed
        index.train(sample)
    index.add(items)
    return index


def index_space(index: Any, dim: int) -> AnnSpace:
    """The space `index` was built in, for user vectors of `dim` (the reduction adds one column)."""
    return "mips_to_l2" if index.d == dim + 1 else "inner_product"


def set_breadth(index: Any, kind: AnnKind, value: int) -> None:
    """efSearch for HNSW, nprobe for IVF."""
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    else:
        index.nprobe = int(min(value, index.nlist))


def search_labels(index: Any, kind: AnnKind, queries: np.ndarray, k: int) -> np.ndarray:
    """Item indices [b, k] the index returns for raw user vectors (a 0 appended for an index over
    the reduction); -1 pads."""
    queries = np.ascontiguousarray(queries, np.float32)
    if index_space(index, queries.shape[1]) == "mips_to_l2":
        queries = mips_queries(queries)
    _, labels = index.search(queries, k)
    return labels


def tune_breadth(
    index: Any,
    kind: AnnKind,
    queries: np.ndarray,
    exact: np.ndarray,
    min_recall: float,
    ladder: Sequence[int] = SEARCH_LADDER,
    target: float | None = None,
) -> tuple[int, float]:
    """The smallest breadth on the ladder whose recall@k on `queries` reaches `target` (default
    min_recall); if none does, the widest tried, provided it reaches min_recall. Raises AnnError."""
    target = max(min_recall, target or min_recall)
    k = exact.shape[1]
    recall, best = 0.0, None
    for value in ladder:
        if kind == "hnsw" and value < k:
            continue
        set_breadth(index, kind, value)
        recall = recall_at_k(search_labels(index, kind, queries, k), exact)
        log.info("%s breadth %d: recall@%d %.4f", kind, value, k, recall)
        if recall >= min_recall:
            best = (value, recall)
        if recall >= target:
            return value, recall
        if kind == "ivf" and value >= index.nlist:
            break
    if best is not None:
        log.warning("%s: recall@%d target %.3f not reached; breadth %d gives %.4f", kind, k, target, *best)
        set_breadth(index, kind, best[0])
        return best
    raise AnnError(
        f"{kind} index reaches recall@{k} {recall:.4f} at the widest search tried, below {min_recall}; "
        "raise hnsw_m / ef_construction (or nlist) and export again"
    )


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread (as the service pins it), so the exact latency is not a thread fight."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
    }


def build_retrieval(
    out_dir: Path,
    items: np.ndarray,
    eval_queries: np.ndarray,
    tune_queries: np.ndarray,
    *,
    kind: AnnKind,
    space: AnnSpace | None = None,
    k: int = 10,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int | None = None,
    ivf_nlist: int | None = None,
    min_recall: float = 0.95,
    tune_recall: float | None = 0.98,
    latency_queries: int = 200,
    threads: int = 1,
    seed: int = 0,
) -> Retrieval:
    """Build, tune, measure and write the index into `out_dir`; return the manifest's `Retrieval`.

    `eval_queries` (>= 1,000 user vectors for the published figure) give recall@k and latency;
    `tune_queries` (other users) choose the breadth unless `ef_search` fixes it: the smallest reaching
    `tune_recall` (headroom above min_recall: a breadth tuned to just 0.95 served 0.93 to a request
    mix unlike the tuning users, on the 1M shop; one rung wider costs ~0.02 ms). Raises AnnError
    when the evaluation recall is below `min_recall`.
    """
    faiss = _faiss()
    items = np.ascontiguousarray(items, np.float32)
    k = min(k, len(items))
    t0 = time.perf_counter()
    index = build_index(
        items,
        kind,
        space=space,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ivf_nlist=ivf_nlist,
        threads=threads,
        seed=seed,
    )
    build_s = time.perf_counter() - t0
    if ef_search is None:
        _, exact_tune = exact_topk(tune_queries, items, k)
        breadth, reached = tune_breadth(index, kind, tune_queries, exact_tune, min_recall, target=tune_recall)
    else:
        breadth, reached = ef_search, None
        set_breadth(index, kind, breadth)
    _, exact_eval = exact_topk(eval_queries, items, k)
    recall = recall_at_k(search_labels(index, kind, eval_queries, k), exact_eval)
    if recall < min_recall:
        raise AnnError(
            f"{kind} index: recall@{k} {recall:.4f} on {len(eval_queries)} users is below {min_recall} "
            f"(breadth {breadth}); raise ef_search or leave it unset to tune it"
        )
    faiss.omp_set_num_threads(1)  # latency as one service worker sees it: one thread for both paths
    sample = eval_queries[:latency_queries]
    with _one_blas_thread():
        exact_lat = latency_ms(lambda q: exact_topk(q, items, k), sample)
    ann_lat = latency_ms(lambda q: search_labels(index, kind, q, k), sample)
    faiss.write_index(index, str(Path(out_dir) / INDEX_FILE))
    params: dict[str, Any] = {
        "metric": "inner_product",  # what the scores are (an index over the reduction is L2 itself)
        "k": k,
        "n_items": int(len(items)),
        "dim": int(items.shape[1]),
        "faiss_version": faiss.__version__,
        "min_recall": min_recall,
    }
    if reached is not None:
        params["tune_target"] = max(min_recall, tune_recall or min_recall)
    if index_space(index, items.shape[1]) == "mips_to_l2":
        params["transform"] = "mips_to_l2"  # the service appends a 0 to each query
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
    if reached is not None:
        metrics["tune_recall"] = reached
    log.info("retrieval %s: params %s metrics %s", kind, params, metrics)
    return Retrieval(kind=kind, index_file=INDEX_FILE, params=params, metrics=metrics)


def student_query_vectors(split: Any, student: Any, n_rows: int, seed: int) -> np.ndarray:
    """float32 [n_rows, dim]: the student's user vectors for a seeded sample of real users' train
    histories, topped up with random histories when the dataset has fewer users (torch imported
    here only: this runs inside the offline job)."""
    from training.evaluate.ranking import padded_histories
    from training.export.graphs import torch_user_vectors
    from training.export.parity import parity_inputs

    rng = np.random.default_rng(seed)
    users = rng.permutation(split.n_users)[:n_rows].astype(np.int64)
    hist = padded_histories(split, users, int(student.history_len))
    inputs = parity_inputs(hist, users, split.n_users, split.n_items, n_rows, seed)
    vectors = [
        torch_user_vectors(student, "student", None, inputs.histories[start : start + 1024])
        for start in range(0, n_rows, 1024)
    ]
    return np.concatenate(vectors)


def retrieval_for_student(cfg: Any, split: Any, student: Any, items: np.ndarray, out_dir: Path) -> Retrieval:
    """The pipeline's step: `Retrieval()` for exact, else build + tune + measure the index.

    `cfg` is the PipelineConfig; recall is measured on `export.recall_users` users and the
    breadth tuned on half as many *other* users (a disjoint part of the same seeded sample).
    """
    x = cfg.export
    if x.retrieval == "exact":
        return Retrieval()
    n_tune = max(100, x.recall_users // 2)
    queries = student_query_vectors(split, student, x.recall_users + n_tune, cfg.seed)
    return build_retrieval(
        out_dir,
        items,
        queries[: x.recall_users],
        queries[x.recall_users :],
        kind=x.retrieval,
        space=None if x.ann_space == "auto" else x.ann_space,
        k=cfg.eval.k,
        hnsw_m=x.hnsw_m,
        ef_construction=x.ef_construction,
        ef_search=x.ef_search,
        ivf_nlist=x.ivf_nlist,
        min_recall=x.min_recall,
        tune_recall=x.ann_tune_recall,
        threads=x.ann_threads,
        seed=cfg.seed,
    )
