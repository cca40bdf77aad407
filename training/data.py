"""Interactions, id maps, the leave-last-out split, and the loaders that produce them.

Everything downstream works on contiguous int64 indices; raw ids (strings) live only in the maps
that are published with the model. Arrays keep the input file's row order, which decides ties.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

NO_CATEGORY = -1


class DataError(ValueError):
    """Bad input data. The message names the file, the row (1-based, header = row 1) and the column."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None):
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


@dataclass(frozen=True)
class Catalog:
    """Item metadata by item index."""

    item_ids: np.ndarray  # str [n_items]: raw id of each index
    category: np.ndarray  # int32 [n_items]: index into `categories`, NO_CATEGORY when unknown
    categories: list[str]
    price: np.ndarray  # float32 [n_items]: NaN when unknown

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


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
        for arr in (self.user, self.item, self.timestamp, self.weight, self.catalog.category, self.catalog.price):
            digest.update(np.ascontiguousarray(arr).tobytes())
        for ids in (self.user_ids, self.catalog.item_ids):
            digest.update("\x1f".join(ids.tolist()).encode())
        return digest.hexdigest()


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


def leave_last_out(log: Interactions, min_interactions: int = 3) -> Split:
    """Split per user by time; see `Split`. O(n log n), vectorised."""
    # lexsort is stable: primary key user, secondary timestamp, ties keep file order.
    order = np.lexsort((log.timestamp, log.user))
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
