"""The data files a version publishes beside its graphs: id maps, item metadata, popularity, the seed
the service knows users by, and the holdout a replay needs to stay honest (read by core/holdout.py).

The seed (`seed_interactions.npz`, manifest `seed_interactions`, `seed_scope = "log"`) is every
interaction of the log the version was trained from — train, validation and test rows — grouped by
user, oldest first (`training.data.split.time_order`), with the event types where the log has them. The
service seeds its history store from it: the holdout is an evaluation device, and the shop's users
really did everything in the log, so a request by `user_id` ranks from all of it and `exclude_seen`
excludes all of it. That makes a replay by `user_id` dishonest, hence the holdout's test queries
(their arrays: core/holdout.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.holdout import HOLDOUT_FILE, SEED_FILE
from training.data.split import time_order
from training.data.types import Interactions, Split


def write_seed(stage: Path, data: Interactions) -> None:
    """Every interaction of `data`, by user and time, with event types when the log has them."""
    order = time_order(data)
    arrays: dict[str, np.ndarray] = {
        "user": data.user[order].astype(np.int64),
        "item": data.item[order].astype(np.int64),
        "timestamp": data.timestamp[order].astype(np.int64),
    }
    if data.event is not None:
        arrays["event"] = data.event[order].astype(np.int16)  # code into event_types, -1: none
        arrays["event_types"] = np.array(data.event_types, dtype=str)
    np.savez(stage / SEED_FILE, **arrays)  # type: ignore[arg-type]


def query_csr(split: Split, with_valid: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 [E + 1], items int64 [Q]): each evaluated user's train items, oldest first, then
    (with_valid) their validation item: the test query `training.evaluate.ranking.rank_targets` ranks from."""
    users = split.test_users
    starts = split.train_indptr[users]
    counts = split.train_indptr[users + 1] - starts
    indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum(counts + int(with_valid), out=indptr[1:])
    items = np.empty(int(indptr[-1]), np.int64)
    row = np.repeat(np.arange(len(users)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    items[indptr[row] + offset] = split.train_items[starts[row] + offset]
    if with_valid:
        items[indptr[1:] - 1] = split.valid_items
    return indptr, items


def write_holdout(stage: Path, split: Split, reported_users: np.ndarray, test_history: str) -> None:
    """The holdout of `split` (the full split, never the training one); `reported_users`: the user
    indices whose test figures the report gives."""
    indptr, items = query_csr(split, test_history == "train+valid")
    np.savez(
        stage / HOLDOUT_FILE,
        user=split.test_users, item=split.test_items, valid_item=split.valid_items,
        query_indptr=indptr, query_item=items,
        reported=np.isin(split.test_users, np.asarray(reported_users, np.int64)),
        test_history=np.array(test_history),
    )  # fmt: skip


def write_data_files(
    stage: Path, data: Interactions, split: Split, reported_users: np.ndarray, test_history: str
) -> None:
    """The id maps, metadata, popularity, the seed (the whole log) and the holdout (the test queries
    of `split`, `reported_users` marking the report's sample): see the module docstring."""
    cat = data.catalog
    np.save(stage / "items.npy", np.asarray(cat.item_ids).astype(str), allow_pickle=False)
    np.save(stage / "users.npy", np.asarray(data.user_ids).astype(str), allow_pickle=False)
    np.save(stage / "item_category.npy", cat.category.astype(np.int32), allow_pickle=False)
    (stage / "categories.json").write_text(json.dumps(list(cat.categories)) + "\n")
    np.save(stage / "item_price.npy", cat.price.astype(np.float32), allow_pickle=False)
    np.save(stage / "popularity.npy", split.item_popularity(), allow_pickle=False)
    write_seed(stage, data)
    write_holdout(stage, split, reported_users, test_history)
    if cat.extra:  # the manifest names it (item_extra, item_extra_columns): see manifest_item_extra
        np.savez(stage / ITEM_EXTRA_FILE, **{name: col.astype(str) for name, col in cat.extra.items()})


ITEM_EXTRA_FILE = "item_extra.npz"


def manifest_item_extra(data: Interactions) -> dict[str, Any]:
    """The manifest fields that describe write_data_files' extra item columns (none: nothing)."""
    columns = list(data.catalog.extra)
    return {"item_extra": ITEM_EXTRA_FILE, "item_extra_columns": columns} if columns else {}
