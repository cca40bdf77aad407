"""Load a published faiss index and answer top-k from it with filters that hold exactly.

faiss is optional for the service (the `ann` extra): it is imported only when a manifest names an
ANN retrieval kind; the exact path never touches it.

How filters and exclusions stay exact while the index is approximate, per query:
- small eligible set (category / price filter leaving <= `exact_threshold` items): numpy scores
  exactly those items (cheaper than any graph walk and exactly right);
- large eligible set: the index searches under a faiss `IDSelectorBitmap` of (eligible - excluded),
  so nothing outside the filter can come back;
- no filter: one batched search over-fetches k + |excluded| and drops the excluded items.
Indexes built over MIPS -> L2 augmented items (`params.transform = "mips_to_l2"`, see
training/export/ann.py) get a 0 appended to each query; without the transform the index is searched on
inner products directly. Returned scores are always recomputed as exact dot products from the item
matrix (k x dim multiply-adds), so they match the exact path's scores, and ties are broken by the
lower item index, as on the exact path.

Cost, and why it decides HTTP throughput. Every batch runs on the micro-batcher's one worker thread,
so requests/s over HTTP is capped near 1 / (that thread's CPU per request), whatever the batch-1
latency. The exact top-k graph scores every item for every query (n_items x dim multiply-adds and a
top-k over n_items scores); an index scores a few thousand candidates. Measured on the 1M-item
shop's published 16-d student (bench/scale.py --version-dir; CPU ms per request through
app/engine/recommender.py): exact 3.9 at batch 1 and 1.4 at batch 32 (a ~700 req/s ceiling); HNSW at
efSearch 24, 0.28 and 0.05 (at batch 1 the fixed per-call costs dominate). An index whose breadth
had to be raised far to reach the recall target (HNSW over the reduction on vectors with a long norm
tail: efSearch > 2,048, ~3 ms a query) caps throughput the same way. faiss releases the GIL while
searching, so the event loop keeps parsing requests meanwhile; what runs here in Python is per batch
(one search, one gather for the exact scores, one membership test for every query's exclusions),
not a numpy call per query.

Whenever the index returns fewer than min(k, allowed) items (a selective filter can starve a graph
walk), the answer is refilled by exact numpy scoring of the allowed set, so k come back whenever
k items are allowed. `refills` counts how often that happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.manifest import Manifest, ManifestError
from core.topk import top_k_of

log = logging.getLogger(__name__)

ANN_KINDS = ("hnsw", "ivf")


def _faiss(path: Path) -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ManifestError(
            f"{path}: the manifest asks for an ANN index but faiss is not installed "
            "(pip install 'recdistill[ann]'), or publish with export.retrieval = 'exact'"
        ) from exc
    return faiss


def _lib() -> Any:
    """faiss, already imported by load_ann (typed Any: its SWIG stubs do not know SearchParameters*)."""
    import faiss

    return faiss


@dataclass(eq=False)
class AnnIndex:
    """A loaded index (read-only after load) plus the item matrix for exact refills."""

    index: Any
    kind: str
    breadth: int  # efSearch (hnsw) or nprobe (ivf) recorded at publish
    item_vectors: np.ndarray  # float32 [n_items, dim]
    exact_threshold: int = 20_000
    augment: bool = False  # mips_to_l2: append a 0 to each query
    threads: int = 1  # faiss OpenMP threads, set on the calling thread before every search
    refills: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _plain_params: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    def _params(self, selector: Any, k: int) -> Any:
        """faiss search parameters; without a selector one cached object per breadth (read-only while
        searching, so worker threads may share it), which saves building it on every batch."""
        breadth = max(self.breadth, k) if self.kind == "hnsw" else self.breadth
        if selector is None and (cached := self._plain_params.get(breadth)) is not None:
            return cached
        faiss = _lib()
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=breadth)
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=breadth)
        if selector is None:
            self._plain_params[breadth] = params
        return params

    def _search(self, vectors: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(exact dot products, labels) [b, k], best first, ties by lower index; label -1 (score -inf) pads.

        One faiss call for the whole batch (its per-call costs, e.g. HNSW's visited table of n_items
        bytes, are paid once per batch), then one gather + batched matmul for the exact scores.
        """
        k = min(k, self.n_items)
        # OpenMP's thread count is per calling thread: the batcher's worker would otherwise use every
        # core and spin-wait against onnxruntime and the event loop (measured: HTTP req/s halved).
        _lib().omp_set_num_threads(self.threads)
        b, dim = vectors.shape
        queries = np.zeros((b, dim + 1) if self.augment else (b, dim), np.float32)
        queries[:, :dim] = vectors  # mips_to_l2: a 0 appended
        _, labels = self.index.search(queries, k, params=self._params(selector, k))
        valid = labels >= 0
        scores = np.matmul(self.item_vectors[np.where(valid, labels, 0)], vectors[:, :, None])[:, :, 0]
        scores = np.where(valid, scores, np.float32(-np.inf))
        order = np.lexsort((labels, -scores), axis=1)  # as core.topk: score desc, ties by lower index
        rows = np.arange(b)[:, None]  # fancy indexing: ~10x cheaper than take_along_axis at batch 1
        return scores[rows, order], labels[rows, order]

    def _exact(self, vector: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_of(allowed, self.item_vectors[allowed] @ vector, k)

    def _refill(self, vector: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact answer over `allowed` when the index came back short (counted in `refills`)."""
        with self._lock:
            self.refills += 1
        return self._exact(vector, allowed, k)

    def _selected(self, vector: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search restricted to `allowed` (sorted int64) through a bitmap selector."""
        faiss = _lib()
        mask = np.zeros(self.n_items, bool)
        mask[allowed] = True
        bits = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(bits))
        scores, labels = self._search(vector[None, :], k, selector)  # `bits` is alive until here
        keep = labels[0] >= 0
        return labels[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def _plain(
        self, vectors: np.ndarray, ks: Sequence[int], excludes: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Unfiltered queries: one search over-fetching k + |excluded| for the whole group, exclusions
        dropped with one vectorised membership test over (row, item) keys, short rows refilled."""
        n = self.n_items
        k_fetch = min(n, max(k + len(ex) for k, ex in zip(ks, excludes, strict=True)))
        scores, labels = self._search(vectors, k_fetch)
        keep = labels >= 0
        sizes = [len(ex) for ex in excludes]
        if any(sizes):
            # key = row * (n + 1) + label + 1: a pad (-1) maps to 0 within its row, never an item's key
            rows = np.arange(len(labels), dtype=np.int64)[:, None] * (n + 1)
            banned = np.repeat(rows[:, 0], sizes) + np.concatenate(excludes) + 1
            keep &= ~np.isin(rows + labels + 1, banned)
        out = []
        for row, (k, ex) in enumerate(zip(ks, excludes, strict=True)):
            idx, sc = labels[row][keep[row]][:k], scores[row][keep[row]][:k]
            if len(idx) < min(k, n - len(ex)):
                mask = np.ones(n, bool)
                mask[ex] = False
                idx, sc = self._refill(vectors[row], np.flatnonzero(mask), k)
            out.append((idx.astype(np.int64, copy=False), sc))
        return out

    def search(
        self,
        user_vectors: np.ndarray,
        ks: Sequence[int],
        excludes: Sequence[np.ndarray],
        eligibles: Sequence[np.ndarray | None],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query (indices int64, scores float32), best first, at most k, never an excluded or
        ineligible item, and exactly min(k, |allowed|) items. `eligibles[i]` sorted unique or None;
        `excludes[i]` unique item indices."""
        vectors = np.ascontiguousarray(user_vectors, np.float32)
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(ks)
        plain = [i for i, e in enumerate(eligibles) if e is None]
        if plain:
            found = self._plain(vectors[plain], [ks[i] for i in plain], [excludes[i] for i in plain])
            for i, answer in zip(plain, found, strict=True):
                out[i] = answer
        for i, eligible in enumerate(eligibles):
            if eligible is None:
                continue
            allowed = eligible
            if len(excludes[i]):
                allowed = allowed[~np.isin(allowed, excludes[i], assume_unique=True)]
            if len(allowed) <= self.exact_threshold:
                out[i] = self._exact(vectors[i], allowed, ks[i])
                continue
            idx, sc = self._selected(vectors[i], allowed, ks[i])
            if len(idx) < min(ks[i], len(allowed)):
                idx, sc = self._refill(vectors[i], allowed, ks[i])
            out[i] = (idx[: ks[i]], sc[: ks[i]])
        return out  # type: ignore[return-value]


def load_ann(
    version_dir: Path,
    manifest: Manifest,
    item_vectors: np.ndarray,
    threads: int = 1,
    exact_threshold: int = 20_000,
) -> AnnIndex | None:
    """The index the manifest names, checked against the item matrix; None for exact retrieval.

    Raises ManifestError (the version is refused) when faiss is missing or the index does not match.
    """
    retrieval = manifest.retrieval
    if retrieval.kind == "exact":
        return None
    path = Path(version_dir) / (retrieval.index_file or "")
    if not retrieval.index_file:
        raise ManifestError(
            f"{Path(version_dir) / 'manifest.json'}: retrieval {retrieval.kind} without index_file"
        )
    faiss = _faiss(path)
    faiss.omp_set_num_threads(threads)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ManifestError(f"{path}: faiss cannot read it: {exc}") from exc
    n, dim = item_vectors.shape
    augment = retrieval.params.get("transform") == "mips_to_l2"
    want_d, want_metric = (dim + 1, faiss.METRIC_L2) if augment else (dim, faiss.METRIC_INNER_PRODUCT)
    if index.ntotal != n or index.d != want_d:
        raise ManifestError(f"{path}: index holds {index.ntotal} x {index.d}, expected {n} x {want_d}")
    if index.metric_type != want_metric:
        raise ManifestError(f"{path}: index metric {index.metric_type}, expected {want_metric}")
    key = "ef_search" if retrieval.kind == "hnsw" else "nprobe"
    breadth = retrieval.params.get(key)
    if not isinstance(breadth, int) or breadth < 1:
        raise ManifestError(
            f"{Path(version_dir) / 'manifest.json'}: retrieval.params.{key} missing or invalid"
        )
    log.info("loaded %s index %s (%s=%d)", retrieval.kind, path, key, breadth)
    return AnnIndex(index, retrieval.kind, breadth, item_vectors, exact_threshold, augment, threads)
