"""The teacher's top-M items for soft labels: exact scoring, or a faiss IVF shortlist at catalog scale.

Soft labels need, for every train pair, the teacher's best M items. Exact scoring multiplies each
pair's user vector with the whole catalog: fine at 10⁴ items, but at 10⁶ it took ~90 s per 8,192
pairs on 2 cores (every pair x every item x 128 dims). An IVF index over the teacher's item vectors
(inner-product metric: the teacher's scores are dot products with unit item vectors) scans only
`nprobe` of its `nlist` cells per query. The logits written are exact dot products of the items
found; what is approximate is which items make the top-M, and that recall is measured against exact
scoring on a seeded sample of queries and returned with the shortlist, so the run records it.

faiss comes from the `ann` extra; `auto` falls back to exact scoring without it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.topk import exact_topk, recall_at_k
from training.config import DistillConfig
from training.export.ann import build_index

log = logging.getLogger(__name__)

TRAIN_POINTS_PER_CELL = 64  # k-means sample per IVF cell (faiss warns under 39; more only costs time)
RECALL_QUERIES = 256


def use_ivf(cfg: DistillConfig, n_items: int) -> bool:
    """Exact scoring unless asked for IVF, or `auto` with a large catalog and faiss installed."""
    if cfg.shortlist == "ivf":
        return True
    if cfg.shortlist == "exact" or n_items < cfg.shortlist_min_items:
        return False
    if importlib.util.find_spec("faiss") is None:
        log.warning("soft labels: %d items but faiss is not installed; scoring the whole catalog", n_items)
        return False
    return True


@dataclass
class IvfShortlist:
    """A faiss IVF-Flat (inner product) index over the item vectors, row i = item i."""

    items: np.ndarray  # float32 [N, D], the teacher's item vectors
    index: Any
    recall: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, items: np.ndarray, cfg: DistillConfig, seed: int, threads: int | None) -> IvfShortlist:
        """training.export.ann's IVF builder on inner products, with a k-means sample of 64 items per cell."""
        items = np.ascontiguousarray(items, np.float32)
        index = build_index(
            items, "ivf", space="inner_product", ivf_nlist=cfg.shortlist_nlist,
            threads=threads or os.cpu_count() or 1, seed=seed, train_per_cell=TRAIN_POINTS_PER_CELL,
        )  # fmt: skip
        index.nprobe = min(cfg.shortlist_nprobe, index.nlist)
        log.info("soft labels: IVF shortlist, %d cells, nprobe %d", index.nlist, index.nprobe)
        return cls(items=items, index=index)

    def top(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) [B, m] best first; rows the cells could not fill are scored exactly."""
        queries = np.ascontiguousarray(queries, np.float32)
        scores, ids = self.index.search(queries, m)
        short = (ids < 0).any(axis=1)
        if short.any():
            scores[short], ids[short] = exact_topk(queries[short], self.items, m)
        return scores, ids

    def measure_recall(self, queries: np.ndarray, m: int) -> dict[str, float]:
        """recall@m of the shortlist against exact top-m on these queries (also kept on the object)."""
        _, approx = self.top(queries, m)
        _, exact = exact_topk(queries, self.items, m)
        k10 = min(10, m)
        self.recall = {
            f"recall@{m}": recall_at_k(approx, exact),
            f"recall@{k10}": recall_at_k(approx[:, :k10], exact[:, :k10]),
            "queries": float(len(queries)),
            "nlist": float(self.index.nlist),
            "nprobe": float(self.index.nprobe),
        }
        log.info("soft labels: IVF shortlist recall %s", self.recall)
        return self.recall
