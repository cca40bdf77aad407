"""The retrain benchmark's day 0 and day 1: each user's two newest rows (ties in file order, as the
split reads them) are day 1's events, and no day-1 test or validation row is in day 0's log."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from bench.retrain.days import check_day1_holdout, make_days, newest_rows


def test_newest_rows_follow_time_then_file_order_per_user() -> None:
    log = pd.DataFrame({
        "user_id": ["a", "b", "a", "a", "b", "a"],
        "item_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
        "timestamp": [5, 1, 7, 7, 2, 1],
    })  # fmt: skip
    # a: p6 (1), p1 (5), p3 (7), p4 (7, later in the file) -> newest two: p3, p4; b: p2, p5
    assert log["item_id"][newest_rows(log, 2)].tolist() == ["p2", "p3", "p4", "p5"]


def _shop(folder: Path, n_users: int = 30, per_user: int = 6) -> Path:
    folder.mkdir()
    rows = [(f"u{u}", f"p{(u * 7 + i) % 25}", 1000 + i // 2) for u in range(n_users) for i in range(per_user)]
    rows.append(("u0", "p-launched", 2000))  # a product only ever bought as someone's newest row
    with gzip.open(folder / "interactions.csv.gz", "wt") as fh:
        fh.write("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    items = sorted({i for _, i, _ in rows})
    with gzip.open(folder / "items.csv.gz", "wt") as fh:
        fh.write("item_id,attributes\n" + "".join(f"{i},a{len(i)}\n" for i in items))
    return folder


def test_day1_holdout_rows_are_exactly_the_events_and_a_leak_is_caught(tmp_path: Path) -> None:
    days = make_days(_shop(tmp_path / "shop"), tmp_path / "days")
    assert (days.n_events, days.new_items) == (60, 1)  # two per user; p-launched is new on day 1
    assert "p-launched" not in days.day0_items.read_text()
    assert check_day1_holdout(days) == {"evaluated_users": 30, "test_and_valid_rows_in_day0": 0}
    # A day 0 that kept one user's newest row (and day 1 without it as an event) leaks it.
    leaky_log, leaky_events = tmp_path / "leaky0.csv", tmp_path / "leaky_events.csv"
    events = pd.read_csv(days.events, dtype=str)
    moved = events["user_id"] == "u3"
    day0 = pd.read_csv(days.day0_log, dtype=str)
    pd.concat([day0, events[moved]]).to_csv(leaky_log, index=False)
    events[~moved].to_csv(leaky_events, index=False)
    leaky = replace(days, day0_log=leaky_log, events=leaky_events, n_day0=len(day0) + int(moved.sum()))
    with pytest.raises(AssertionError, match="2 day-1 test or validation rows"):
        check_day1_holdout(leaky)
    with pytest.raises(ValueError, match="at least 2"):
        make_days(tmp_path / "shop", tmp_path / "days1", newest=1)


def test_steps_read_back_from_disk_keep_the_order_they_ran_in(tmp_path) -> None:
    from bench.retrain.run import _run_order

    for name in ("cold1", "day0", "refit", "warm1", "warm10", "warm2", "warm3"):
        (tmp_path / f"{name}.json").write_text("{}")
    read = [p.stem for p in sorted(tmp_path.glob("*.json"), key=_run_order)]
    assert read == ["day0", "warm1", "cold1", "warm2", "warm3", "warm10", "refit"]
