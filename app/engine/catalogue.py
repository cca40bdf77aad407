"""The catalogue as it is now, over one loaded version: the trained catalogue with the live overlay
(app/stores: `CatalogueEntry`s) applied. Pure numpy; built off the request path, read by it.

A `CatalogueView` holds what `prepare` and the answer read: prices, categories (a category an
operator names that the version never saw is appended to its list, so filters can name it), the
extra columns, and the items that must never be served. A version without overrides gets
`trained_view`, which only points at the model's own arrays.

How unavailable items are kept out of every answer (`unavailable_filter`): up to `FEW_UNAVAILABLE`
they join the request's exclusions, which the top-k graph over-fetches by; beyond, the view holds
the sorted available items and a request is answered from them as from a filter (one matvec over
the item matrix, whatever the count). Measured on a 100k-item random version (k 10, 20 history
items, one core, a loaded machine): the plain answer 1.0 ms; excluding 64 items 0.95 ms, 1,024 items
2.0 ms, 4,096 items 3.5 ms; the filtered path 1.2 to 2.0 ms at any count. scripts/overlay_cost.py
times the served paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from app.engine.model import LoadedModel
from app.stores.records import CatalogueEntry

FEW_UNAVAILABLE = 256  # up to this many: excluded per request; beyond: served from `available`
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
    available: np.ndarray | None = None  # sorted int64, only when unavailable > FEW_UNAVAILABLE
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
    available = None
    if len(unavailable) > FEW_UNAVAILABLE:
        keep = np.ones(model.n_items, bool)
        keep[unavailable] = False
        available = np.flatnonzero(keep).astype(np.int64)
    return CatalogueView(
        price=price,
        category=category,
        categories=categories,
        category_index={name: c for c, name in enumerate(categories)},
        items_by_category=by_category,
        item_extra=_with_extras(model.item_extra, extras),
        unavailable=_frozen(unavailable),
        available=None if available is None else _frozen(available),
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


def unavailable_filter(
    view: CatalogueView, exclude: np.ndarray, eligible: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A request's (exclude, eligible) with the view's unavailable items kept out (module docstring)."""
    if not len(view.unavailable):
        return exclude, eligible
    if view.available is None:
        return np.union1d(exclude, view.unavailable), eligible
    if eligible is None:
        return exclude, view.available
    return exclude, np.intersect1d(eligible, view.available, assume_unique=True)
