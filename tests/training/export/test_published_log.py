"""training/export/published_log.py (written) and core/holdout.py (read back) on a hand-made log: the
seed is the whole log by user and time, with event types; the holdout's test queries are what the
offline ranking read; a replay body asks for exactly that."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.holdout import HOLDOUT_FILE, SEED_FILE, HoldoutError, read_holdout, replay_body, replay_words
from tests.fixtures.hand_made import hand_made_log
from training.data.split import leave_last_out
from training.evaluate.ranking import padded_histories
from training.export.published_log import write_holdout, write_seed

# u0: i2 (t3), i0 (t1), i1 (t2), i3 (t4) in file order -> by time i0 i1 i2 i3: train [i0, i1], valid i2, test i3
# u1: i4 (t5), i5 (t5): a tie, file order decides -> train [], valid i4, test i5 (min_interactions 2)
# u2: i1 (t9): one interaction, train only
USERS, ITEMS, STAMPS = [0, 0, 0, 0, 1, 1, 2], [2, 0, 1, 3, 4, 5, 1], [3, 1, 2, 4, 5, 5, 9]
EVENTS = ["cart", "view", "view", "purchase", "view", "", "view"]


def events_log():
    log = hand_made_log(USERS, ITEMS, n_users=3, n_items=6, timestamp=STAMPS)
    types = ("view", "cart", "purchase")
    codes = np.array([types.index(e) if e else -1 for e in EVENTS], np.int16)
    return replace(log, event=codes, event_types=types)


def test_the_seed_is_every_row_by_user_and_time_with_its_event_type(tmp_path: Path) -> None:
    write_seed(tmp_path, events_log())
    with np.load(tmp_path / SEED_FILE, allow_pickle=False) as npz:
        assert npz["user"].tolist() == [0, 0, 0, 0, 1, 1, 2]
        assert npz["item"].tolist() == [0, 1, 2, 3, 4, 5, 1]  # validation and test rows included
        assert npz["timestamp"].tolist() == [1, 2, 3, 4, 5, 5, 9]
        names = np.append(npz["event_types"], "")[npz["event"]]  # -1 -> ""
        assert names.tolist() == ["view", "view", "cart", "purchase", "view", "", "view"]
    write_seed(tmp_path, hand_made_log(USERS, ITEMS, 3, 6, STAMPS))  # a log without event types
    with np.load(tmp_path / SEED_FILE, allow_pickle=False) as npz:
        assert set(npz.files) == {"user", "item", "timestamp"}


def _holdout(tmp_path: Path, test_history: str, reported: list[int]):
    split = leave_last_out(events_log(), min_interactions=2)
    write_holdout(tmp_path, split, np.array(reported), test_history)
    ids = np.array([f"i{i}" for i in range(6)])
    return split, read_holdout(tmp_path, HOLDOUT_FILE, np.array(["u0", "u1", "u2"]), ids)


def test_the_holdout_holds_the_test_queries_the_ranking_read(tmp_path: Path) -> None:
    split, holdout = _holdout(tmp_path, "train+valid", reported=[1])
    assert holdout.queries and holdout.test_history == "train+valid"
    assert holdout.user_ids.tolist() == ["u0", "u1"] and holdout.items.tolist() == ["i3", "i5"]
    assert [holdout.query(0), holdout.query(1)] == [["i0", "i1", "i2"], ["i4"]]
    assert holdout.reported.tolist() == [False, True]
    padded = padded_histories(split, split.test_users, 4, then=split.valid_items)  # rank_targets' query
    for row in range(2):
        assert [f"i{i}" for i in padded[row] if i != split.n_items] == holdout.query(row)
    _, train_only = _holdout(tmp_path, "train", reported=[0, 1])
    assert [train_only.query(0), train_only.query(1)] == [["i0", "i1"], []]


def test_a_replay_body_sends_the_query_as_history_and_excludes_what_the_ranking_excluded(
    tmp_path: Path,
) -> None:
    _, holdout = _holdout(tmp_path, "train+valid", reported=[0, 1])
    assert replay_body(holdout, 0, k=10) == {
        "user_id": "u0", "history": ["i0", "i1", "i2"], "k": 10, "exclude_seen": True,
    }  # fmt: skip
    # a query longer than the service's history limit: the older items go as exclusions
    assert replay_body(holdout, 0, k=5, max_history=2) == {
        "user_id": "u0", "history": ["i1", "i2"], "k": 5, "exclude_seen": True,
        "filters": {"exclude_items": ["i0"]},
    }  # fmt: skip
    _, train_only = _holdout(tmp_path, "train", reported=[0, 1])
    assert replay_body(train_only, 0, k=10)["filters"] == {"exclude_items": ["i2"]}  # the validation item
    assert "explicit history" in replay_words(holdout)


def test_an_older_holdout_replays_by_user_id_and_says_so(tmp_path: Path) -> None:
    np.savez(tmp_path / HOLDOUT_FILE, user=np.array([1]), item=np.array([5]))
    holdout = read_holdout(
        tmp_path, HOLDOUT_FILE, np.array(["u0", "u1"]), np.array([f"i{i}" for i in range(6)])
    )
    assert not holdout.queries and holdout.reported.tolist() == [True]
    assert replay_body(holdout, 0, k=3) == {"user_id": "u1", "k": 3}
    assert "stored history of user_id" in replay_words(holdout)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"user": np.array([0]), "item": np.array([9])}, "'item' has indices outside"),
        ({"user": np.array([], np.int64), "item": np.array([], np.int64)}, "non-empty"),
        (
            {
                "user": np.array([0]),
                "item": np.array([1]),
                "valid_item": np.array([2]),
                "query_indptr": np.array([0, 3]),
                "query_item": np.array([1]),
                "reported": np.array([True]),
                "test_history": np.array("train+valid"),
            },  # fmt: skip
            "query_indptr does not describe query_item",
        ),
    ],
)
def test_a_bad_holdout_is_refused_naming_the_file_and_array(
    tmp_path: Path, arrays: dict, message: str
) -> None:
    np.savez(tmp_path / HOLDOUT_FILE, **arrays)
    with pytest.raises(HoldoutError, match=message):
        read_holdout(tmp_path, HOLDOUT_FILE, np.array(["u0"]), np.array([f"i{i}" for i in range(6)]))
