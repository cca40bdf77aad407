"""Load a published faiss index and answer top-k from it with filters that hold exactly.

faiss is optional for the service (the `ann` extra): it is imported only when a manifest names an
ANN retrieval kind; the exact path never touches it.

How filters and exclusions stay exact while the index is approximate, per query:
- small eligible set (category / price filter leaving <= `exact_threshold` items): numpy scores
  exactly those items (cheaper than any graph walk and exactly right);
- large eligible set: the index searches under a faiss `IDSelectorBitmap` of (eligible - excluded),
  so nothing outside the filter can come back;
- no filter: one batched search over-fetches k + |excluded| and drops the excluded items.
HNSW indexes are built over MIPS -> L2 augmented items (`params.transform = "mips_to_l2"`, see
training/ann.py): queries get a 0 appended. Returned scores are always recomputed as exact dot
products from the item matrix (k x dim multiply-adds), so they match the exact path's scores.

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


def exact_top(cand: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of `cand` by score desc, ties by lower index (as the recommender's exact path)."""
    if k < len(cand):
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((cand[part], -scores[part]))]
    else:
        order = np.lexsort((cand, -scores))
    return cand[order].astype(np.int64), scores[order].astype(np.float32)


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

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    def _params(self, selector: Any, k: int) -> Any:
        faiss = _lib()
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.breadth, k))
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.breadth)

    def _search(self, vectors: np.ndarray, k: int, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(exact dot products, labels) [b, k], best first; label -1 (score -inf) pads."""
        k = min(k, self.n_items)
        # OpenMP's thread count is per calling thread: the batcher's worker would otherwise use every
        # core and spin-wait against onnxruntime and the event loop (measured: HTTP req/s halved).
        _lib().omp_set_num_threads(self.threads)
        queries = np.asarray(vectors, np.float32)
        if self.augment:
            queries = np.hstack([queries, np.zeros((len(queries), 1), np.float32)])
        _, labels = self.index.search(np.ascontiguousarray(queries), k, params=self._params(selector, k))
        valid = labels >= 0
        scores = np.einsum("bkd,bd->bk", self.item_vectors[np.where(valid, labels, 0)], vectors)
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")  # L2 order after the transform is the IP order
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(labels, order, axis=1)

    def _exact(self, vector: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_top(allowed, self.item_vectors[allowed] @ vector, k)

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

    def _complete(
        self, vector: np.ndarray, idx: np.ndarray, sc: np.ndarray, allowed_count: int, k: int, allowed: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        want = min(k, allowed_count)
        if len(idx) >= want:
            return idx[:k], sc[:k]
        with self._lock:
            self.refills += 1
        return self._exact(vector, allowed() if callable(allowed) else allowed, k)

    def search(
        self,
        user_vectors: np.ndarray,
        ks: Sequence[int],
        excludes: Sequence[np.ndarray],
        eligibles: Sequence[np.ndarray | None],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query (indices int64, scores float32), best first, at most k, never an excluded or
        ineligible item, and exactly min(k, |allowed|) items. `eligibles[i]` sorted unique or None."""
        n = self.n_items
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(ks)
        plain = [i for i, e in enumerate(eligibles) if e is None]
        if plain:
            k_fetch = min(n, max(ks[i] + len(excludes[i]) for i in plain))
            scores, labels = self._search(user_vectors[plain], k_fetch)
            for row, i in enumerate(plain):
                lab, sc = labels[row], scores[row]
                keep = lab >= 0
                if len(excludes[i]):
                    keep &= ~np.isin(lab, excludes[i])
                ex = excludes[i]

                def everything_but(ex: np.ndarray = ex) -> np.ndarray:
                    mask = np.ones(n, bool)
                    mask[ex] = False
                    return np.flatnonzero(mask)

                out[i] = self._complete(
                    user_vectors[i], lab[keep].astype(np.int64), sc[keep], n - len(ex), ks[i], everything_but
                )
        for i, eligible in enumerate(eligibles):
            if eligible is None:
                continue
            allowed = eligible
            if len(excludes[i]):
                allowed = allowed[~np.isin(allowed, excludes[i], assume_unique=True)]
            if len(allowed) <= self.exact_threshold:
                out[i] = self._exact(user_vectors[i], allowed, ks[i])
            else:
                idx, sc = self._selected(user_vectors[i], allowed, ks[i])
                out[i] = self._complete(user_vectors[i], idx, sc, len(allowed), ks[i], allowed)
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
