"""Raw string ids to contiguous indices: the one mapping every source and every appended log goes through.

Readers (training/data/tabular.py, training/data/movielens.py) return raw string ids; only the
functions here assign indices, so a file, the synthetic shop and an appended event log are numbered
by the same rules (first appearance; metadata-only items after the log's; categories and attributes
sorted). training/data/stream.py does the same chunk by chunk and ends in `make_catalog` and
`extend_interactions` here.
"""

from __future__ import annotations

import numpy as np

from training.data.types import (
    NO_CATEGORY,
    NO_EVENT,
    Catalog,
    DataError,
    Interactions,
    RawItems,
    RawLog,
    no_attributes_indptr,
)

_MAX_EVENT_TYPES = int(np.iinfo(np.int16).max)


def index_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map raw string ids to contiguous indices in order of first appearance.

    Returns (indices int64 [n], ids str [n_unique]) so that ids[indices] == raw.
    """
    raw = np.asarray(raw).astype(str)
    uniques, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first-appearance order: stable across reruns
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), uniques[order]


def build_interactions(name: str, log: RawLog, items: RawItems | None = None) -> Interactions:
    """Map a raw log (and optional metadata) to indices.

    Items are indexed in order of first appearance in the log, then metadata-only items in file
    order (they can be recommended even though nobody has interacted with them yet). Categories are
    indexed in sorted order. Log items missing from the metadata get NO_CATEGORY and a NaN price.
    """
    user, user_ids = index_ids(log.user)
    meta_ids = items.item if items is not None else np.zeros(0, dtype=str)
    all_items, item_ids = index_ids(np.concatenate([np.asarray(log.item, dtype=str), meta_ids]))
    item = all_items[: len(log)]
    catalog = make_catalog(item_ids, items, all_items[len(log) :])
    event, event_types = (None, ()) if log.event is None else event_codes(*index_ids(log.event))
    return Interactions(
        name=name,
        user=user,
        item=item,
        timestamp=np.asarray(log.timestamp, dtype=np.int64),
        weight=np.asarray(log.weight, dtype=np.float32),
        user_ids=user_ids,
        catalog=catalog,
        event=event,
        event_types=event_types,
    )


def event_codes(codes: np.ndarray, types: np.ndarray | list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(int16 codes, event type names) for `Interactions.event`; DataError past int16's range."""
    if len(types) > _MAX_EVENT_TYPES:
        raise DataError(f"{len(types)} distinct event types; at most {_MAX_EVENT_TYPES} are supported")
    return np.asarray(codes).astype(np.int16), tuple(str(t) for t in types)


def make_catalog(item_ids: np.ndarray, items: RawItems | None, meta_rows: np.ndarray) -> Catalog:
    """The catalog over `item_ids`, filled from `items` (row j describes item index meta_rows[j]).

    Categories and attributes are indexed in sorted order; items without metadata get NO_CATEGORY, a
    NaN price and no attributes.
    """
    n_items = len(item_ids)
    category = np.full(n_items, NO_CATEGORY, dtype=np.int32)
    price = np.full(n_items, np.nan, dtype=np.float32)
    categories: list[str] = []
    attributes: list[str] = []
    attr_indptr, attr_index = no_attributes_indptr(), np.zeros(0, np.int64)
    extra: dict[str, np.ndarray] = {}
    for name, values in (items.extra if items is not None else {}).items():
        column = np.full(n_items, "", dtype=object)
        column[meta_rows] = values
        extra[name] = column.astype(str)
    if items is not None and len(items.item):
        known = items.category != ""
        categories = sorted(set(items.category[known].tolist()))
        lookup = {c: i for i, c in enumerate(categories)}
        category[meta_rows[known]] = [lookup[c] for c in items.category[known].tolist()]
        price[meta_rows] = items.price
        if items.attr_indptr is not None and items.attr_tags is not None:
            attributes, attr_indptr, attr_index = _attribute_csr(
                n_items, meta_rows, items.attr_indptr, items.attr_tags
            )
    return Catalog(
        item_ids=item_ids, category=category, categories=categories, price=price,
        attributes=attributes, attr_indptr=attr_indptr, attr_index=attr_index, extra=extra,
    )  # fmt: skip


def _attribute_csr(
    n_items: int, meta_rows: np.ndarray, indptr: np.ndarray, tags: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The metadata rows' tags re-ordered by item index: (sorted vocabulary, indptr [n+1], index)."""
    vocab, codes = np.unique(np.asarray(tags, dtype=str), return_inverse=True)
    counts = np.zeros(n_items, np.int64)
    row_counts = np.diff(np.asarray(indptr, dtype=np.int64))
    counts[meta_rows] = row_counts
    out_indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    out_index = np.empty(int(out_indptr[-1]), np.int64)
    src_row = np.repeat(np.arange(len(row_counts)), row_counts)  # metadata row of each tag
    offset = np.arange(len(src_row)) - np.asarray(indptr, dtype=np.int64)[src_row]
    out_index[out_indptr[meta_rows[src_row]] + offset] = codes
    return vocab.tolist(), out_indptr, out_index


def _extend_ids(known: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `raw` against the id map `known`; unseen ids get new indices after it.

    Returns (indices int64 [n], the extended id map). New ids are numbered in first-appearance order.
    """
    raw = np.asarray(raw, dtype=str)
    known = np.asarray(known, dtype=str)
    if len(known) == 0:
        return index_ids(raw)
    order = np.argsort(known, kind="stable")
    pos = np.minimum(np.searchsorted(known, raw, sorter=order), len(known) - 1)
    found = known[order[pos]] == raw
    out = np.empty(len(raw), dtype=np.int64)
    out[found] = order[pos[found]]
    if not found.all():
        new_idx, new_ids = index_ids(raw[~found])
        out[~found] = len(known) + new_idx
        known = np.concatenate([known, new_ids])
    return out, known


def append_log(base: Interactions, log: RawLog) -> Interactions:
    """Append a raw log after `base`, reusing its indices; new users and items are added at the end.

    New items get NO_CATEGORY and a NaN price: an event log carries no item metadata.
    """
    user, user_ids = _extend_ids(base.user_ids, log.user)
    item, item_ids = _extend_ids(base.catalog.item_ids, log.item)
    events = None if log.event is None else event_codes(*_extend_ids(np.array(base.event_types), log.event))
    return extend_interactions(base, user, item, log.timestamp, log.weight, user_ids, item_ids, events)


def extend_interactions(
    base: Interactions,
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    weight: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    events: tuple[np.ndarray, tuple[str, ...]] | None = None,
) -> Interactions:
    """`base` followed by rows already indexed against `user_ids`/`item_ids`, base's maps extended.

    The one place that appends (append_log here, append_files in training/data/stream.py), so both give
    the same result: new items get NO_CATEGORY and a NaN price, as an event log carries no metadata.
    `events`: the new rows' (codes, event types), the types extending base's (None: no event column).
    """
    n_new = len(item_ids) - base.n_items
    old = base.catalog
    catalog = Catalog(
        item_ids=item_ids,
        category=np.concatenate([old.category, np.full(n_new, NO_CATEGORY, dtype=np.int32)]),
        categories=list(old.categories),
        price=np.concatenate([old.price, np.full(n_new, np.nan, dtype=np.float32)]),
        attributes=list(old.attributes),
        attr_indptr=old.attr_indptr,  # attribute_rows() gives the new items no tags
        attr_index=old.attr_index,
        extra={name: np.concatenate([col, np.full(n_new, "", dtype=str)]) for name, col in old.extra.items()},
    )
    event, event_types = base.event, base.event_types
    if events is not None or base.event is not None:
        new, event_types = events if events is not None else (None, base.event_types)
        event = np.concatenate([
            base.event if base.event is not None else np.full(len(base), NO_EVENT, np.int16),
            new if new is not None else np.full(len(user), NO_EVENT, np.int16),
        ]).astype(np.int16)  # fmt: skip
    return Interactions(
        name=base.name,
        user=np.concatenate([base.user, user]),
        item=np.concatenate([base.item, item]),
        timestamp=np.concatenate([base.timestamp, np.asarray(timestamp, dtype=np.int64)]),
        weight=np.concatenate([base.weight, np.asarray(weight, dtype=np.float32)]),
        user_ids=user_ids,
        catalog=catalog,
        event=event,
        event_types=event_types,
    )
