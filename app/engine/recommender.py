"""Top-k for a batch of queries on one loaded model: ONNX top-k, exact filters, popularity fallback.

Pure numpy + onnxruntime, synchronous: it runs on the batcher's worker thread, never on the event loop.

Three paths, chosen per query:
- plain (no category/price filter): the whole catalogue scored against the user vectors, excluded
  items masked, the exact top k (app/engine/exact.py); a side whose graph holds a reduced-precision
  item matrix runs its `topk` graph with k_fetch = k + |excluded| (capped at n_items) and drops the
  excluded items afterwards. Either way k come back whenever k are not excluded;
- filtered (category and/or price): the `user` graph gives the user vector and numpy scores only the
  eligible items (argpartition), so k come back whenever k are eligible;
- cold start (no known item in the history): popularity order under the same filters, flagged.
Prices and categories come from the request's `CatalogueView` (the trained catalogue with the live
overlay applied, app/engine/catalogue.py); its items never to serve travel as `Query.unavailable`
and are kept out here, on the worker thread, by each path (module docstring of catalogue.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.engine.ann import AnnIndex
from app.engine.catalogue import EMPTY, CatalogueView, among, fold_unavailable, trained_view
from app.engine.exact import exact_top_k
from app.engine.model import LoadedModel, Side
from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
)
from core.topk import top_k_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Query:
    """One recommendation request, already mapped to item indices of `model`."""

    model: LoadedModel
    history: np.ndarray  # int64: known items, oldest first (the side reads its last history_len)
    k: int
    exclude: np.ndarray = field(
        default_factory=lambda: EMPTY
    )  # int64, unique: never returned (seen items, exclude_items)
    eligible: np.ndarray | None = None  # int64 sorted unique when a category/price filter applies
    user: int | None = None  # user index for the teacher; None = unknown (oov)
    side: str = "student"
    # int64 sorted: the catalogue's items never to serve (the view's own array, shared by every request
    # over it, never copied): kept apart from `exclude` so its length costs the event loop nothing
    unavailable: np.ndarray = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, eq=False)
class Result:
    indices: np.ndarray  # int64 [<= k], best first
    scores: np.ndarray  # float32 [<= k]
    fallback: str | None  # None or "popular"


def eligible_items(
    catalogue: CatalogueView | LoadedModel,
    category_codes: list[int] | None,
    min_price: float | None,
    max_price: float | None,
) -> np.ndarray | None:
    """Sorted item indices passing the category and price filters; None when neither is set.

    Items with an unknown (NaN) price are not eligible once a price bound is given. Categories use
    the per-category index arrays cached at load time; a price bound alone is one vectorised
    comparison over the catalogue (~0.1 ms at 100k items).
    """
    if not category_codes and min_price is None and max_price is None:
        return None
    if category_codes:
        parts = [catalogue.items_by_category[c] for c in dict.fromkeys(category_codes)]
        cand = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
        price = catalogue.price[cand]
    else:
        cand, price = None, catalogue.price
    keep = np.ones(len(price), bool)
    if min_price is not None:
        keep &= price >= min_price  # NaN compares False
    if max_price is not None:
        keep &= price <= max_price
    if cand is None:
        return np.flatnonzero(keep).astype(np.int64)
    return cand if keep.all() else cand[keep]


def _history_matrix(side: Side, histories: list[np.ndarray]) -> np.ndarray:
    """(B, L) int64, left-padded with padding_value, most recent last."""
    length = side.history_len
    out = np.full((len(histories), length), side.padding_value, np.int64)
    for row, hist in enumerate(histories):
        tail = hist[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def _feeds(side: Side, queries: list[Query]) -> dict[str, np.ndarray]:
    feeds = {HISTORY_INPUT: _history_matrix(side, [q.history for q in queries])}
    if side.needs_user:
        oov = side.oov_user
        feeds[USER_INPUT] = np.array([oov if q.user is None else q.user for q in queries], np.int64)
    return feeds


def _popular(q: Query) -> Result:
    model = q.model
    if q.eligible is None and not len(q.exclude) and not len(q.unavailable):
        top = model.popular_order[: q.k]
    else:
        mask = np.ones(model.n_items, bool) if q.eligible is None else np.zeros(model.n_items, bool)
        if q.eligible is not None:
            mask[q.eligible] = True
        mask[q.exclude] = False
        mask[q.unavailable] = False
        order = model.popular_order
        top = order[mask[order]][: q.k]
    return Result(top, model.popularity[top].astype(np.float32), "popular")


def _plain(side: Side, queries: list[Query]) -> list[Result]:
    """The whole catalogue ranked for the group: scored by the float32 side's score graph and ranked in
    numpy (app/engine/exact.py), else by the side's top-k graph (`_plain_graph`)."""
    if side.scores is None:
        return _plain_graph(side, queries)
    (user_vectors,) = side.user.run([USER_VECTOR_OUTPUT], _feeds(side, queries))
    excludes = [(q.exclude, q.unavailable) for q in queries]
    found = exact_top_k(side.scores, len(side.item_vectors), user_vectors, [q.k for q in queries], excludes)
    return [Result(idx, sc, None) for idx, sc in found]


def _plain_graph(side: Side, queries: list[Query]) -> list[Result]:
    """One ORT run of the top-k graph for the whole group; the item matrix is read once. It fetches
    k + |excluded| + |unavailable| and drops those, so its cost grows with their count (the float32
    path's does not)."""
    assert side.topk is not None
    n = queries[0].model.n_items
    k_fetch = min(n, max(q.k + len(q.exclude) + len(q.unavailable) for q in queries))
    scores, indices = side.topk.run(
        [SCORES_OUTPUT, INDICES_OUTPUT], {**_feeds(side, queries), K_INPUT: np.array([k_fetch], np.int64)}
    )
    results = []
    for row, q in enumerate(queries):
        idx, sc = indices[row], scores[row]
        if len(q.exclude) or len(q.unavailable):
            keep = ~(np.isin(idx, q.exclude, assume_unique=True) | among(idx, q.unavailable))
            idx, sc = idx[keep], sc[keep]
        results.append(Result(idx[: q.k], sc[: q.k], None))
    return results


def _drop(cand: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """`cand` (sorted, unique) without the ids of `exclude` (unique, any order): a binary search per
    excluded id and one copy, never a pass that builds a catalogue-sized mask."""
    if not len(exclude):
        return cand
    pos = np.searchsorted(cand, exclude)
    inside = pos < len(cand)
    pos = pos[inside]
    hit = pos[cand[pos] == exclude[inside]]
    return np.delete(cand, hit) if len(hit) else cand


def _filtered(side: Side, queries: list[Query]) -> list[Result]:
    """User vectors from one ORT run, then exact numpy scoring of each query's eligible items.

    A small eligible set is gathered and scored alone; when it covers more than a quarter of the
    catalogue, one matvec over the whole (contiguous) item matrix is cheaper than gathering most of
    its rows. Excluded ids leave the sorted eligible set by binary search (`_drop`): building a
    catalogue-sized mask instead cost ~0.2 ms per request at 100k items.
    """
    (user_vectors,) = side.user.run([USER_VECTOR_OUTPUT], _feeds(side, queries))
    results = []
    for row, q in enumerate(queries):
        assert q.eligible is not None
        cand = _drop(q.eligible, q.exclude)
        if len(q.eligible) * 4 > q.model.n_items:
            scores = side.item_vectors @ user_vectors[row]
            scores[q.unavailable] = -np.inf  # one scatter, however many
            idx, sc = top_k_of(cand, scores[cand], q.k)
            allowed = np.count_nonzero(sc > -np.inf)
            results.append(Result(idx[:allowed], sc[:allowed], None))
        else:
            cand = cand[~among(cand, q.unavailable)]
            results.append(Result(*top_k_of(cand, side.item_vectors[cand] @ user_vectors[row], q.k), None))
    return results


def _ann(side: Side, ann: AnnIndex, queries: list[Query]) -> list[Result]:
    """User vectors from one ORT run, then the ANN index (filters held exactly, see app/engine/ann.py)."""
    (user_vectors,) = side.user.run([USER_VECTOR_OUTPUT], _feeds(side, queries))
    folded = fold_unavailable(ann.n_items, [(q.exclude, q.eligible, q.unavailable) for q in queries])
    found = ann.search(user_vectors, [q.k for q in queries], [f[0] for f in folded], [f[1] for f in folded])
    return [Result(idx, sc, None) for idx, sc in found]


def recommend_batch(queries: list[Query]) -> list[Result]:
    """Answer every query, grouping those that share a model and side into one ORT run per path."""
    results: list[Result | None] = [None] * len(queries)
    groups: dict[tuple[int, str, bool], list[int]] = {}
    for i, q in enumerate(queries):
        # no history, or a lookup teacher that does not know the user: the labelled popular fallback
        if not len(q.history) or not q.model.side(q.side).can_score(q.user):
            results[i] = _popular(q)
        else:
            groups.setdefault((id(q.model), q.side, q.eligible is not None), []).append(i)
    for (_, side_name, filtered), members in groups.items():
        group = [queries[i] for i in members]
        side = group[0].model.side(side_name)
        ann = group[0].model.ann if side_name == "student" else None
        if ann is not None:
            answers = _ann(side, ann, group)
        else:
            answers = _filtered(side, group) if filtered else _plain(side, group)
        for i, answer in zip(members, answers, strict=True):
            results[i] = answer
    return results  # type: ignore[return-value]


class UnknownCategory(ValueError):
    """A category filter naming a category the served model does not know."""

    def __init__(self, name: str, position: int):
        super().__init__(f"unknown category {name!r}")
        self.name, self.position = name, position


@dataclass(frozen=True, eq=False)
class Prepared:
    query: Query
    unknown_items: list[str]  # history ids the model does not know, first occurrence order
    view: CatalogueView  # the catalogue the query was prepared against (the answer's fields read it)


def prepare(
    model: LoadedModel,
    *,
    history: list[str],
    k: int,
    exclude_seen: bool,
    user_id: str | None = None,
    categories: list[str] | None = None,
    exclude_items: list[str] | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
    side: str = "student",
    view: CatalogueView | None = None,
) -> Prepared:
    """Map raw ids to indices and filters to an eligible set over `view` (default: the trained
    catalogue); the view's unavailable items ride along as `unavailable`. Raises UnknownCategory."""
    view = trained_view(model) if view is None else view
    index = model.item_index
    known: list[int] = []
    unknown: dict[str, None] = {}
    for item in history:
        i = index.get(item)
        if i is None:
            unknown[item] = None
        else:
            known.append(i)
    excluded: set[int] = set(known) if exclude_seen else set()
    for item in exclude_items or ():
        i = index.get(item)
        if i is not None:
            excluded.add(i)
    codes: list[int] = []
    for pos, name in enumerate(categories or ()):
        code = view.category_index.get(name)
        if code is None:
            raise UnknownCategory(name, pos)
        codes.append(code)
    query = Query(
        model=model,
        history=np.array(known, np.int64),
        k=k,
        exclude=np.fromiter(excluded, np.int64, len(excluded)) if excluded else EMPTY,
        eligible=eligible_items(view, codes, min_price, max_price),
        user=None if user_id is None else model.user_index.get(user_id),
        side=side,
        unavailable=view.unavailable,
    )
    return Prepared(query, list(unknown), view)


def item_list(
    model: LoadedModel, result: Result, fields: Sequence[str] | None = None, view: CatalogueView | None = None
) -> list[dict[str, object]]:
    """[{item_id, score}] in rank order, as the API returns it; with `fields` (names from
    `model.item_fields`), each item also carries those catalogue columns from `view` (default: the
    trained catalogue), None where unknown."""
    ids = model.item_ids[result.indices].tolist()
    items: list[dict[str, object]] = [
        {"item_id": i, "score": s} for i, s in zip(ids, result.scores.tolist(), strict=True)
    ]
    for name in fields or ():
        items_column = catalogue_column(view or model, name, result.indices)
        for item, value in zip(items, items_column, strict=True):
            item[name] = value
    return items


def catalogue_column(catalogue: CatalogueView | LoadedModel, name: str, indices: np.ndarray) -> list[object]:
    """One catalogue column for the answer's items: category name, price, or an extra column."""
    if name == "category":
        codes = catalogue.category[indices].tolist()
        return [catalogue.categories[c] if c >= 0 else None for c in codes]
    if name == "price":
        prices = catalogue.price[indices].astype(np.float64).tolist()
        return [None if p != p else p for p in prices]  # NaN: None
    return [v or None for v in catalogue.item_extra[name][indices].tolist()]


def limit_blas_threads() -> Callable[[], None]:
    """Pin numpy's BLAS to one thread for the service's life; returns the undo.

    The filtered path's matvec (100k x 32) takes ~0.4 ms on one thread but 12-20 ms when OpenBLAS
    spreads it over threads that fight onnxruntime, the event loop and the shadow teacher for two
    cores (measured: tests/fixtures random_arrays(100_000), load average ~12). Uses threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a service dependency
        log.warning("threadpoolctl is not installed: numpy BLAS keeps its default thread count")
        return lambda: None
    limiter = threadpool_limits(limits=1, user_api="blas")
    return limiter.restore_original_limits
