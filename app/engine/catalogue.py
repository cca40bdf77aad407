"""The catalogue as it is now, over one loaded version: the trained catalogue with the live overlay
(app/stores: `CatalogueEntry`s) applied. Pure numpy; built off the request path, read by it.

A `CatalogueView` holds what `prepare` and the answer read: prices, categories (a category an
operator names that the version never saw is appended to its list, so filters can name it), the
extra columns, and the items that must never be served. A version without overrides gets
`trained_view`, which only points at the model's own arrays.

How unavailable items are kept out of every answer: the view holds them sorted (`unavailable`), a
request carries that same array (`Query.unavailable`: nothing is merged or copied on the event
loop), and each path drops them on the inference thread: the exact path scores them -inf (one
scatter, whatever the count), the filtered path drops them from its candidates (a binary search
each, or one scatter when it scores the whole catalogue), the popular order masks them, a top-k
graph over-fetches by their count, and the ANN index (which takes only exclusions and an eligible
set, `fold_unavailable`) gets up to `FEW_UNAVAILABLE` of them as exclusions, beyond that an eligible
set without them. scripts/overlay_cost.py times the served paths with 0 to 10,000 unavailable items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from app.engine.model import LoadedModel
from app.stores.records import CatalogueEntry

FEW_UNAVAILABLE = 256  # for the ANN index: up to this many join its exclusions; beyond, its eligible set
EMPTY = np.zeros(0, np.int64)


@dataclass(frozen=True, eq=False)
class CatalogueView:
    """One version's catalogue with the overlay applied; immutable, swapped whole on every change."""

    price: np.ndarray  # float32 [n_items], NaN = unknown
    category: np.ndarray  # int32 [n_items], -1 = none; codes index `categories`
    categories: list[str]
    category_index: dict[str, int]
    items_by_category: dict[int, np.ndarray]  # code -> sorted int64 item indices
    item_extra: dict[str, np.ndarray]  # column -> str [n_items], "" = unknown
    unavailable: np.ndarray = field(default_factory=lambda: EMPTY)  # sorted int64
    generation: int = 0  # the overlay generation it was built from (0: the trained catalogue)


def trained_view(model: LoadedModel) -> CatalogueView:
    """The catalogue exactly as the version was trained with: the model's own arrays, no copy."""
    return CatalogueView(
        model.price,
        model.category,
        model.categories,
        model.category_index,
        model.items_by_category,
        model.item_extra,
    )


def build_view(model: LoadedModel, entries: Iterable[CatalogueEntry], generation: int) -> CatalogueView:
    """`model`'s catalogue with every entry about an item it knows applied (others are ignored).

    Only what an entry changes is copied: a price override copies the price array, a category
    override the codes (and recomputes only the categories it touches)."""
    index = model.item_index
    gone: list[int] = []
    prices: list[tuple[int, float]] = []
    moves: list[tuple[int, str]] = []
    extras: list[tuple[int, str, str]] = []
    for entry in entries:
        i = index.get(entry.item_id)
        if i is None:
            continue
        if not entry.available:
            gone.append(i)
        if entry.price is not None:
            prices.append((i, entry.price))
        if entry.category is not None:
            moves.append((i, entry.category))
        extras += [(i, name, value) for name, value in entry.fields.items() if name in model.item_extra]
    view = trained_view(model)
    price = _with_prices(model.price, prices)
    category, categories, by_category = _with_categories(view, moves)
    unavailable = np.unique(np.array(gone, np.int64))
    return CatalogueView(
        price=price,
        category=category,
        categories=categories,
        category_index={name: c for c, name in enumerate(categories)},
        items_by_category=by_category,
        item_extra=_with_extras(model.item_extra, extras),
        unavailable=_frozen(unavailable),
        generation=generation,
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _with_prices(trained: np.ndarray, prices: list[tuple[int, float]]) -> np.ndarray:
    if not prices:
        return trained
    price = trained.copy()
    rows, values = zip(*prices, strict=True)
    price[list(rows)] = values
    return _frozen(price)


def _with_categories(
    view: CatalogueView, moves: list[tuple[int, str]]
) -> tuple[np.ndarray, list[str], dict[int, np.ndarray]]:
    """Codes, names and per-category items after the moves; new names are appended, sorted."""
    if not moves:
        return view.category, view.categories, view.items_by_category
    known = view.category_index
    categories = view.categories + sorted({name for _, name in moves} - set(known))
    codes = {name: c for c, name in enumerate(categories)}
    category = view.category.copy()
    touched = {int(category[i]) for i, _ in moves}
    for i, name in moves:
        category[i] = codes[name]
    touched |= {codes[name] for _, name in moves}
    by_category = dict(view.items_by_category)
    for code in touched - {-1}:
        by_category[code] = _frozen(np.flatnonzero(category == code).astype(np.int64))
    return _frozen(category), categories, by_category


def _with_extras(trained: dict[str, np.ndarray], extras: list[tuple[int, str, str]]) -> dict[str, np.ndarray]:
    if not extras:
        return trained
    columns = dict(trained)
    for name in {name for _, name, _ in extras}:
        columns[name] = trained[name].astype(object)  # any length of text, unlike the fixed-width array
    for i, name, value in extras:
        columns[name][i] = value
    return {name: _frozen(col) for name, col in columns.items()}


def among(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """bool per id of `ids`: whether `sorted_ids` holds it (a binary search each, no catalogue mask)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def fold_unavailable(
    n_items: int, rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per (exclude, eligible, unavailable): the (exclude, eligible) of a path that knows only those
    (the ANN index). Up to FEW_UNAVAILABLE unavailable items join `exclude` (an index over-fetches by
    its exclusions); beyond, `eligible` loses them, or becomes every other item (computed once per
    distinct unavailable array in the batch: the requests of one view share it)."""
    others: dict[int, np.ndarray] = {}
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    for exclude, eligible, unavailable in rows:
        if len(unavailable) <= FEW_UNAVAILABLE:
            out.append((np.union1d(exclude, unavailable) if len(unavailable) else exclude, eligible))
        elif eligible is not None:
            out.append((exclude, eligible[~among(eligible, unavailable)]))
        else:
            if id(unavailable) not in others:
                keep = np.ones(n_items, bool)
                keep[unavailable] = False
                others[id(unavailable)] = np.flatnonzero(keep).astype(np.int64)
            out.append((exclude, others[id(unavailable)]))
    return out
