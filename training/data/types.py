"""The interaction log's types: Interactions, Catalog, Split, and the raw logs the readers return.

Everything downstream works on contiguous int64 indices; raw ids (strings) live only in the maps
that are published with the model. Arrays keep the input file's row order, which decides ties.
Only types and constants here (numpy only): the id mapping is training/data/indexing.py, the split
training/data/split.py, and the one place that knows the sources training/data/load.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from core.errors import UserError

NO_CATEGORY = -1
# A user evaluated by leave_last_out gives their own validation and test interaction: fewer than two
# rows would take one from the user before them in the sorted log.
MIN_EVALUATED_INTERACTIONS = 2
NO_EVENT = -1  # Interactions.event code of a row whose log names no event type


class DataError(UserError, ValueError):
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


def no_attributes_indptr() -> np.ndarray:
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
    attr_indptr: np.ndarray = field(default_factory=no_attributes_indptr)  # int64 [n_items + 1] (or [1])
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
