"""Interactions, id maps, the leave-last-out split, and the loaders that produce them.

Everything downstream works on contiguous int64 indices; raw ids (strings) live only in the maps
that are published with the model. Arrays keep the input file's row order, which decides ties.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.config import DataConfig

logger = logging.getLogger(__name__)

NO_CATEGORY = -1
# A user evaluated by leave_last_out gives their own validation and test interaction: fewer than two
# rows would take one from the user before them in the sorted log.
MIN_EVALUATED_INTERACTIONS = 2
NO_EVENT = -1  # Interactions.event code of a row whose log names no event type
_MAX_EVENT_TYPES = int(np.iinfo(np.int16).max)


class DataError(ValueError):
    """Bad input data. The message names the file, the row (1-based, header = row 1) and the column."""

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None
    ):
        where = ", ".join(
            part
            for part in (
                file,
                f"row {row}" if row is not None else None,
                f"column '{column}'" if column is not None else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.row, self.column = file, row, column


def _no_attributes_indptr() -> np.ndarray:
    return np.zeros(1, np.int64)


@dataclass(frozen=True)
class Catalog:
    """Item metadata by item index.

    Attributes (brand, category path, tags: any number per item) are CSR: item i's tags are
    `attributes[attr_index[attr_indptr[i]:attr_indptr[i + 1]]]`. An empty `attr_indptr` (the default)
    means no item has any; `attribute_rows` gives the full-length form.
    """

    item_ids: np.ndarray  # str [n_items]: raw id of each index
    category: np.ndarray  # int32 [n_items]: index into `categories`, NO_CATEGORY when unknown
    categories: list[str]
    price: np.ndarray  # float32 [n_items]: NaN when unknown
    attributes: list[str] = field(default_factory=list)  # the attribute vocabulary, sorted
    attr_indptr: np.ndarray = field(default_factory=_no_attributes_indptr)  # int64 [n_items + 1] (or [1])
    attr_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [nnz]
    # Columns passed through to the service's answers (data.item_columns.extra): str [n_items], "" unknown.
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def attribute_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr int64 [n_items + 1], index int64 [nnz]); items past the stored rows have no tags."""
        indptr = np.asarray(self.attr_indptr, dtype=np.int64)
        missing = self.n_items + 1 - len(indptr)
        if missing > 0:
            indptr = np.concatenate([indptr, np.full(missing, indptr[-1], np.int64)])
        return indptr, np.asarray(self.attr_index, dtype=np.int64)


@dataclass(frozen=True)
class Interactions:
    """An interaction log in input-file order, already mapped to contiguous indices."""

    name: str
    user: np.ndarray  # int64 [n]
    item: np.ndarray  # int64 [n]
    timestamp: np.ndarray  # int64 [n], seconds
    weight: np.ndarray  # float32 [n]
    user_ids: np.ndarray  # str [n_users]
    catalog: Catalog
    # Event types, kept when a log has an event column (data.columns.event) so the service's history
    # can tell a view from a purchase: int16 [n] codes into `event_types`, NO_EVENT where the row's
    # log had none. None: no log named event types.
    event: np.ndarray | None = None
    event_types: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return self.catalog.n_items

    def __len__(self) -> int:
        return len(self.user)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the mapped log and id maps: the same data gives the same fingerprint."""
        digest = hashlib.sha256()
        for arr in (
            self.user,
            self.item,
            self.timestamp,
            self.weight,
            self.catalog.category,
            self.catalog.price,
            *self.catalog.attribute_rows(),
        ):
            digest.update(np.ascontiguousarray(arr).tobytes())
        digest.update("\x1f".join(self.catalog.attributes).encode())
        for ids in (self.user_ids, self.catalog.item_ids):
            digest.update("\x1f".join(ids.tolist()).encode())
        if self.event is not None:  # a log without event types keeps the fingerprint it always had
            digest.update(np.ascontiguousarray(self.event).tobytes())
            digest.update("\x1f".join(self.event_types).encode())
        return digest.hexdigest()

    def event_names(self) -> np.ndarray | None:
        """str [n]: each row's event type ("" where its log named none), or None without event types."""
        if self.event is None:
            return None
        names = np.array([*self.event_types, ""], dtype=str)
        return names[np.where(self.event == NO_EVENT, len(self.event_types), self.event)]


@dataclass(frozen=True)
class Split:
    """Leave-last-out by time.

    Per user, interactions are ordered by a *stable* sort on timestamp (ties keep file order). The
    last is test, the one before validation, the rest train. Users with fewer than
    `min_interactions` keep everything in train and have no validation or test item.
    """

    n_users: int
    n_items: int
    train_indptr: np.ndarray  # int64 [n_users + 1]: CSR offsets into train_items
    train_items: np.ndarray  # int64 [n_train]: each user's train items, oldest first
    train_timestamps: np.ndarray  # int64 [n_train]
    valid_users: np.ndarray  # int64 [n_eval]
    valid_items: np.ndarray  # int64 [n_eval]
    test_users: np.ndarray  # int64 [n_eval] (same users as valid_users)
    test_items: np.ndarray  # int64 [n_eval]
    train_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def history(self, user: int) -> np.ndarray:
        """The user's train items, oldest first."""
        return self.train_items[self.train_indptr[user] : self.train_indptr[user + 1]]

    @property
    def train_users(self) -> np.ndarray:
        """int64 [n_train]: the user of each train interaction (CSR expanded)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.train_indptr))

    def item_popularity(self) -> np.ndarray:
        """float64 [n_items]: train interaction counts per item."""
        return np.bincount(self.train_items, minlength=self.n_items).astype(np.float64)

    def evaluated_rows(self, rows: np.ndarray) -> Split:
        """The split with only these evaluated rows (a bool mask or indices into valid_users); the
        validation and test arrays stay aligned, the train arrays are shared."""
        return replace(
            self,
            valid_users=self.valid_users[rows],
            valid_items=self.valid_items[rows],
            test_users=self.test_users[rows],
            test_items=self.test_items[rows],
        )


def time_order(log: Interactions) -> np.ndarray:
    """int64 [n]: the rows grouped by user, each user's oldest first (a stable sort: ties keep file
    order). The one order of a user's interactions: the split, the service's seed and the holdout."""
    return np.lexsort((log.timestamp, log.user))


def leave_last_out(log: Interactions, min_interactions: int = 3) -> Split:
    """Split per user by time; see `Split`. O(n log n), vectorised.

    Raises ValueError when `min_interactions` < 2: a user with one interaction would take their
    validation row from the user before them, so one user's test item became another's train item.
    """
    if min_interactions < MIN_EVALUATED_INTERACTIONS:
        raise ValueError(
            f"min_interactions must be at least {MIN_EVALUATED_INTERACTIONS}, got {min_interactions}: "
            "an evaluated user needs a validation and a test interaction of their own"
        )
    order = time_order(log)
    users, items, ts, w = log.user[order], log.item[order], log.timestamp[order], log.weight[order]
    counts = np.bincount(users, minlength=log.n_users)
    ends = np.cumsum(counts)  # one past each user's last row
    evaluated = counts >= min_interactions
    eval_users = np.flatnonzero(evaluated).astype(np.int64)
    test_rows = ends[eval_users] - 1
    valid_rows = ends[eval_users] - 2
    keep = np.ones(len(users), dtype=bool)
    keep[test_rows] = False
    keep[valid_rows] = False
    train_counts = np.bincount(users[keep], minlength=log.n_users)
    indptr = np.zeros(log.n_users + 1, dtype=np.int64)
    np.cumsum(train_counts, out=indptr[1:])
    return Split(
        n_users=log.n_users,
        n_items=log.n_items,
        train_indptr=indptr,
        train_items=items[keep].astype(np.int64),
        train_timestamps=ts[keep].astype(np.int64),
        valid_users=eval_users,
        valid_items=items[valid_rows].astype(np.int64),
        test_users=eval_users,
        test_items=items[test_rows].astype(np.int64),
        train_weights=w[keep].astype(np.float32),
    )


def with_validation_items(split: Split, held_out: np.ndarray) -> Split:
    """The split to train on: every user's validation item joins their train items, except the
    `held_out` users' (the ones early stopping reads), whose validation rows are all that is left.

    Why: the validation item is a user's most recent interaction before the test one. A model kept
    from it never learns the newest transitions (and the newest items' popularity), yet the standard
    test query ends with it; the classic peers are refit on it (training/evaluate/peers.py) and a production
    model trains on everything it has. Holding out only the early-stopping sample keeps the
    validation signal honest (those users' validation items are never trained on) and lets the
    model learn from the rest, as RecTools' SASRec does with its validation mask (the published
    figures in shared/data/README.md). Measured on Amazon Beauty: a teacher refit on train +
    validation items scores test NDCG@10 0.049 against 0.042 for the same teacher without them.

    held_out: user indices, a subset of split.valid_users. The test arrays follow the validation
    arrays (same users, aligned), so `evaluate(..., "test")` on the result stays consistent; score
    the test set on the original split.
    """
    held = np.isin(split.valid_users, np.asarray(held_out, dtype=np.int64))
    joins = split.valid_users[~held]  # users whose validation item is now their last train item
    counts = np.diff(split.train_indptr)
    new_counts = counts.copy()
    new_counts[joins] += 1
    indptr = np.zeros(split.n_users + 1, dtype=np.int64)
    np.cumsum(new_counts, out=indptr[1:])
    users = split.train_users
    old_at = np.arange(len(split.train_items), dtype=np.int64) - split.train_indptr[users] + indptr[users]
    items = np.empty(indptr[-1], dtype=np.int64)
    stamps = np.empty(indptr[-1], dtype=np.int64)
    weights = np.ones(indptr[-1], dtype=np.float32)
    items[old_at], stamps[old_at] = split.train_items, split.train_timestamps
    if len(split.train_weights) == len(split.train_items):
        weights[old_at] = split.train_weights
    last = indptr[joins + 1] - 1
    items[last] = split.valid_items[~held]
    # After the user's last train interaction (the split keeps time order within a user).
    previous = np.where(counts[joins] > 0, stamps[np.maximum(last - 1, 0)], 0)
    stamps[last] = previous
    return replace(
        split.evaluated_rows(held),
        train_indptr=indptr,
        train_items=items,
        train_timestamps=stamps,
        train_weights=weights,
    )


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


# --- Raw logs and loaders --------------------------------------------------------------------------
# Readers (tabular.py, movielens.py) return raw string ids; only the functions below assign indices,
# so every source and every appended log goes through the same mapping rules.


@dataclass(frozen=True)
class RawLog:
    """An interaction log as read from a file: raw string ids, validated, in file order."""

    source: str  # file name, for messages and logs
    user: np.ndarray  # str [n]
    item: np.ndarray  # str [n]
    timestamp: np.ndarray  # int64 [n], epoch seconds
    weight: np.ndarray  # float32 [n]
    event: np.ndarray | None = None  # str [n]: the event column (data.columns.event); None: none

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class RawItems:
    """Item metadata as read from a file: one row per item id (ids are unique)."""

    source: str
    item: np.ndarray  # str [m]
    category: np.ndarray  # str [m]; "" when unknown
    price: np.ndarray  # float32 [m]; NaN when unknown
    # Multi-valued attributes, CSR over the m rows: row j's tags are attr_tags[attr_indptr[j]:attr_indptr[j+1]].
    attr_indptr: np.ndarray | None = None  # int64 [m + 1]; None: the file has no attributes column
    attr_tags: np.ndarray | None = None  # str [nnz]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # column -> str [m]; "" when missing


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
    attr_indptr, attr_index = _no_attributes_indptr(), np.zeros(0, np.int64)
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


def _require_files(cfg: DataConfig) -> None:
    """DataError naming the missing file and the config key that named it, before anything is read."""
    if cfg.source == "file" and cfg.path is None:
        raise DataError("data.path is required when data.source = 'file'")
    named = [("data.path", cfg.path), ("data.items_path", cfg.items_path)] if cfg.source == "file" else []
    named += [(f"data.extra_paths[{i}]", path) for i, path in enumerate(cfg.extra_paths)]
    for key, path in named:
        if path is not None and not Path(path).is_file():
            relative = "" if Path(path).is_absolute() else f", relative to {Path.cwd()}"
            raise DataError(f"no such file (named by {key}{relative})", file=str(path))


def load_interactions(cfg: DataConfig, *, seed: int = 0) -> Interactions:
    """The configured source, then every `cfg.extra_paths` log appended in order.

    Files (the source and every extra log) are streamed `cfg.chunk_rows` rows at a time with
    `cfg.event_weights` applied, so small and large files take the same path (training/data/stream.py).
    `seed` is the pipeline seed; it is added to `cfg.synthetic.seed` so that the defaults (both 0)
    reproduce `generate_synthetic(cfg.synthetic)` exactly. File sources ignore it.
    """
    # Imported here: the loaders import DataError and RawLog from this module.
    from training.data.movielens import load_ml100k
    from training.data.stream import append_files, stream_interactions
    from training.data.synthetic import generate_synthetic
    from training.data.tabular import read_items

    _require_files(cfg)
    if cfg.source == "file":
        items = (
            read_items(cfg.items_path, cfg.item_columns, cfg.attribute_separator)
            if cfg.items_path is not None
            else None
        )
        log = stream_interactions(
            Path(cfg.path).stem,
            cfg.path,
            cfg.columns,
            items=items,
            extra_paths=cfg.extra_paths,
            chunk_rows=cfg.chunk_rows,
            event_weights=cfg.event_weights,
        )
    else:
        if cfg.source == "synthetic":
            synthetic = cfg.synthetic.model_copy(update={"seed": cfg.synthetic.seed + seed})
            log = generate_synthetic(synthetic)
        elif cfg.source == "ml-100k":
            log = load_ml100k(cfg.cache_dir)
        else:  # pragma: no cover - DataConfig's Literal rules this out
            raise DataError(f"unknown data.source {cfg.source!r}")
        if cfg.extra_paths:
            log = append_files(
                log, cfg.extra_paths, cfg.columns, chunk_rows=cfg.chunk_rows, event_weights=cfg.event_weights
            )
    logger.info(
        "loaded %s: %d users, %d items, %d interactions", log.name, log.n_users, log.n_items, len(log)
    )
    return log
