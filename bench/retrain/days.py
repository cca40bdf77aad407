"""Day 0 and day 1 of a public shop log: what the retrain benchmark trains on, and its leak check.

Day 0 is every user's log without their newest `newest` interactions (per user, in the order the
split reads it: time, ties in file order, training.data.split.time_order), and an item file of the
products day 0 has seen: a product first bought among the removed rows is new on day 1, as a product
launched yesterday is. Day 1 adds the removed rows back as the service would have logged them (an
events CSV in `recdistill events export`'s columns) and the whole item file (its new products'
metadata, as the catalogue overlay brings them).

Why no test item can reach any training data, nor an early-stopping validation item: with
`newest >= 2`, each user's two newest interactions (the day-1 split's test and validation items)
are removed from day 0, so neither day 0's training nor its checkpoints, from which day 1 starts,
ever saw them; day 1's own split trains on neither a test item nor an early-stopping user's
validation item (training.data.split.training_split). `check_day1_holdout` asserts, on the real
files, that day 1's test and validation rows are exactly removed rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.files import open_atomic

EVENT_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclass(frozen=True)
class Days:
    """The files of one log's day 0 and day 1."""

    day0_log: Path  # interactions without each user's newest rows
    day0_items: Path  # the items day 0 has seen
    events: Path  # the removed rows, oldest first per file order: day 1's events
    items: Path  # the whole item file (day 1)
    n_day0: int
    n_events: int
    new_items: int  # items first seen among the events


def newest_rows(log: pd.DataFrame, newest: int) -> np.ndarray:
    """bool [n]: each user's `newest` most recent rows (time, ties in file order, as the split orders them)."""
    order = np.lexsort(
        (np.arange(len(log)), log["timestamp"].to_numpy(np.int64), log["user_id"].to_numpy(str))
    )
    users = log["user_id"].to_numpy(str)[order]
    from_end = pd.Series(users).groupby(users).cumcount(ascending=False).to_numpy()
    out = np.zeros(len(log), dtype=bool)
    out[order[from_end < newest]] = True
    return out


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "w", newline="") as fh:
        frame.to_csv(fh, index=False)


def make_days(data_dir: Path, out: Path, newest: int = 2) -> Days:
    """Write day 0's log and item file and day 1's events under `out` (idempotent: rewritten alike)."""
    if newest < 2:
        raise ValueError(f"newest={newest}: at least 2, or day 1's validation items were trained on by day 0")
    log = pd.read_csv(data_dir / "interactions.csv.gz", dtype={"user_id": str, "item_id": str})
    items = pd.read_csv(data_dir / "items.csv.gz", dtype=str, keep_default_na=False)
    removed = newest_rows(log, newest)
    day0, events = log[~removed], log[removed]
    seen = set(day0["item_id"])
    days = Days(
        day0_log=out / "day0.csv", day0_items=out / "day0_items.csv", events=out / "events.csv",
        items=data_dir / "items.csv.gz", n_day0=len(day0), n_events=len(events),
        new_items=len(set(events["item_id"]) - seen),
    )  # fmt: skip
    _write(day0, days.day0_log)
    _write(items[items["item_id"].isin(seen)], days.day0_items)
    _write(events[list(EVENT_COLUMNS)], days.events)
    return days


def check_day1_holdout(days: Days) -> dict[str, int]:
    """Day 1 loaded as a retrain loads it (day 0 + the events): every evaluated user's test and
    validation rows are removed rows. AssertionError naming the count otherwise."""
    from training.config import DataConfig
    from training.data.load import load_interactions
    from training.data.split import leave_last_out

    cfg = DataConfig(source="file", path=days.day0_log, items_path=days.items, extra_paths=[days.events])
    data = load_interactions(cfg)
    split = leave_last_out(data, cfg.min_interactions)
    n0 = days.n_day0  # rows past the base log are the events
    order = np.lexsort((data.timestamp, data.user))
    ends = np.cumsum(np.bincount(data.user, minlength=data.n_users))
    test_rows, valid_rows = order[ends[split.test_users] - 1], order[ends[split.test_users] - 2]
    leaked = int((test_rows < n0).sum() + (valid_rows < n0).sum())
    assert np.array_equal(data.item[test_rows], split.test_items)
    assert leaked == 0, f"{leaked} day-1 test or validation rows are in day 0's log"
    return {"evaluated_users": len(split.test_users), "test_and_valid_rows_in_day0": leaked}
