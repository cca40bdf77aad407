"""A loaded model version: the immutable object every request holds while it is answered.

`LoadedModel` is built only by `app.engine.loading.load_version`, after every check passed; a new
version replaces it by one reference swap in `app.engine.model_store.ModelStore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.engine.ann import AnnIndex
from core.manifest import Manifest, ModelCard


@dataclass(frozen=True, eq=False)
class Side:
    """One model side (student or teacher) ready to run: sessions plus what scoring needs."""

    name: str
    # What ranks the catalogue (app/engine/loading.py `ranking_sessions`): a float32 side scores it with
    # `scores` (MatMul by item_vectors, app/engine/score_graph.py) and ranks in numpy; a side whose
    # graph holds a reduced-precision matrix runs its published top-k graph, `topk`. One is None.
    topk: ort.InferenceSession | None
    user: ort.InferenceSession
    item_vectors: np.ndarray  # float32 [n_items, dim], read-only
    history_len: int
    padding_value: int
    oov_user: int | None  # teacher only
    # A lookup teacher (embedding tables): bool [n_users], the users it has a vector for. None: the
    # side computes a query from the history, for anyone.
    known_users: np.ndarray | None = None
    scores: ort.InferenceSession | None = None

    @property
    def needs_user(self) -> bool:
        return self.oov_user is not None

    def can_score(self, user: int | None) -> bool:
        """False for a lookup teacher and a user it has no vector for (or no user id): never guessed."""
        return self.known_users is None or (user is not None and bool(self.known_users[user]))


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """An immutable, verified model version. Never mutated after construction: swap, do not edit."""

    version: str
    path: Path
    manifest: Manifest
    student: Side
    teacher: Side
    item_ids: np.ndarray  # str [n_items]
    item_index: dict[str, int]
    user_index: dict[str, int]
    category: np.ndarray  # int32 [n_items]
    categories: list[str]
    category_index: dict[str, int]
    items_by_category: dict[int, np.ndarray]  # category -> sorted int64 item indices
    price: np.ndarray  # float32 [n_items]
    popularity: np.ndarray  # float64 [n_items]
    popular_order: np.ndarray  # int64 [n_items]: most popular first, ties by index
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ann: AnnIndex | None = None  # the student's ANN index when the manifest's retrieval is hnsw/ivf
    # Extra catalogue columns (manifest.item_extra): column -> str [n_items], "" where unknown.
    item_extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def item_fields(self) -> tuple[str, ...]:
        """What a request may ask for in `fields`: category, price and this version's extra columns."""
        return ("category", "price", *self.item_extra)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def side(self, name: str) -> Side:
        if name == "student":
            return self.student
        if name == "teacher":
            return self.teacher
        raise ValueError(f"unknown model side {name!r}")

    def summary(self) -> dict[str, Any]:
        """What GET /v1/models shows: the manifest minus the file list, plus load facts."""
        m = self.manifest
        return {
            "version": self.version,
            "created_at": m.created_at.isoformat(),
            "loaded_at": self.loaded_at.isoformat(),
            "dataset": m.dataset.model_dump(mode="json"),
            "n_items": self.n_items,
            "n_users": len(self.user_index),
            "categories": self.categories,
            "item_fields": list(self.item_fields),
            "student": _card_summary(m.student),
            "teacher": _card_summary(m.teacher),
            "retrieval": m.retrieval.model_dump(mode="json"),
            "retrieval_served": "exact" if self.ann is None else self.ann.kind,  # RECDISTILL_RETRIEVAL
            "metrics": m.metrics,
            "parity": m.parity,
        }


def _card_summary(card: ModelCard) -> dict[str, Any]:
    return {"dim": card.dim, "history_len": card.history_len, "parameters": card.parameters}
