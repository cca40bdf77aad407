"""A published version's holdout, read back: the test queries a replay sends to stay honest.

training/export/published_log.py writes it (`holdout.npz`, manifest `holdout`); `recdistill
simulate-ab` and bench/ read it here, numpy only, without the offline job. The service's history
store holds a version's whole log (its seed), so a replay by `user_id` alone would hand the model
the test item; the holdout carries each evaluated user's test query as the report ranked it (train
items, plus the validation item under the standard protocol), sent as an explicit `history`
(`replay_body`). Arrays:
  user int64 [E], item int64 [E]     each evaluated user and their test item
  valid_item int64 [E]               their validation item (excluded from the answer either way)
  query_indptr int64 [E + 1], query_item int64 [Q]
                                     CSR: row r's test query is query_item[query_indptr[r]:query_indptr[r + 1]]
  reported bool [E]                  the rows the report's test figures ranked (eval.max_users's sample)
  test_history str []                "train+valid" or "train" (eval.test_history)
Versions published before these arrays existed hold `user` and `item` only (`Holdout.queries` False).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

SEED_FILE = "seed_interactions.npz"
HOLDOUT_FILE = "holdout.npz"


class HoldoutError(UserError, ValueError):
    """A holdout file that cannot be replayed: unreadable, inconsistent, or outside the id maps."""


@dataclass(frozen=True)
class Holdout:
    """A version's holdout in raw ids. Without `queries` (an older version) only users and items."""

    user_ids: np.ndarray  # str [E]
    items: np.ndarray  # str [E]: the test items
    queries: bool  # whether the test queries below were published
    valid_items: np.ndarray  # str [E] ([] without queries)
    query_indptr: np.ndarray  # int64 [E + 1] ([0] without queries)
    query_items: np.ndarray  # str [Q]
    reported: np.ndarray  # bool [E]: the report's users (all True without queries)
    test_history: str  # "train+valid", "train", or "" without queries

    def __len__(self) -> int:
        return len(self.user_ids)

    def query(self, row: int) -> list[str]:
        """Row `row`'s test query, oldest first."""
        return self.query_items[self.query_indptr[row] : self.query_indptr[row + 1]].tolist()


def read_holdout(version_dir: Path, holdout: str, user_ids: np.ndarray, item_ids: np.ndarray) -> Holdout:
    """The holdout file `holdout` of a version folder, mapped to raw ids. Raises HoldoutError."""
    path = Path(version_dir) / holdout
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise HoldoutError(f"{path}: cannot read: {exc}") from exc
    if "user" not in arrays or "item" not in arrays:
        raise HoldoutError(f"{path}: needs arrays 'user' and 'item'")
    users, items = arrays["user"].astype(np.int64), arrays["item"].astype(np.int64)
    if len(users) != len(items) or not len(users):
        raise HoldoutError(f"{path}: needs equally long, non-empty 'user' and 'item' arrays")
    _check_range(path, "user", users, len(user_ids))
    _check_range(path, "item", items, len(item_ids))
    if "query_indptr" not in arrays:  # published before test queries were
        empty = np.zeros(0, str)
        return Holdout(
            user_ids[users], item_ids[items], False, empty, np.zeros(1, np.int64), empty,
            np.ones(len(users), bool), "",
        )  # fmt: skip
    indptr, query = arrays["query_indptr"].astype(np.int64), arrays["query_item"].astype(np.int64)
    valid, reported = arrays["valid_item"].astype(np.int64), arrays["reported"].astype(bool)
    if len(indptr) != len(users) + 1 or indptr[-1] != len(query) or (np.diff(indptr) < 0).any():
        raise HoldoutError(f"{path}: query_indptr does not describe query_item for {len(users)} rows")
    if len(valid) != len(users) or len(reported) != len(users):
        raise HoldoutError(f"{path}: valid_item and reported need {len(users)} rows")
    _check_range(path, "query_item", query, len(item_ids))
    _check_range(path, "valid_item", valid, len(item_ids))
    return Holdout(
        user_ids[users], item_ids[items], True, item_ids[valid], indptr, item_ids[query], reported,
        str(arrays["test_history"]),
    )  # fmt: skip


def _check_range(path: Path, name: str, values: np.ndarray, size: int) -> None:
    if len(values) and (values.min() < 0 or values.max() >= size):
        raise HoldoutError(f"{path}: '{name}' has indices outside the published id map ({size} ids)")


def replay_body(holdout: Holdout, row: int, k: int, max_history: int = 1000) -> dict[str, Any]:
    """The `/v1/recommend` body that asks for row `row`'s test item as the report did.

    The test query goes as `history` (its newest `max_history` items: the service's request limit);
    older query items and, under the train-only protocol, the validation item go as
    `filters.exclude_items`, so the answer excludes exactly what the offline ranking excluded. The
    `user_id` is sent too: it decides the A/B arm (sticky per user) and a lookup teacher's row, as in
    the offline evaluation, while the history no longer comes from the store (which now holds the
    test item). Without published queries: `user_id` alone (the store's history).
    """
    user = str(holdout.user_ids[row])
    if not holdout.queries:
        return {"user_id": user, "k": k}
    query = holdout.query(row)
    excluded = dict.fromkeys(query[:-max_history] if len(query) > max_history else [])
    if holdout.test_history == "train":
        excluded[str(holdout.valid_items[row])] = None
    body: dict[str, Any] = {"user_id": user, "history": query[-max_history:], "k": k, "exclude_seen": True}
    if excluded:
        body["filters"] = {"exclude_items": list(excluded)}
    return body


def replay_words(holdout: Holdout) -> str:
    """One line saying what a replay sends as the query, for its output."""
    if not holdout.queries:
        return (
            "query: the stored history of user_id (this version publishes no test queries; "
            "its seed holds the train split only)"
        )
    what = "train + validation items" if holdout.test_history == "train+valid" else "train items"
    return f"query: each user's test query ({what}) sent as an explicit history; user_id only assigns the arm"
