"""training/data/split.py: leave-last-out by time (ties by file order) and the split the stages train on."""

from __future__ import annotations

import numpy as np

from tests.fixtures.hand_made import raw_log
from training.data.indexing import build_interactions
from training.data.split import leave_last_out, with_validation_items


def test_leave_last_out_breaks_timestamp_ties_by_file_order():
    # u1: A@10, B@30, C@20, D@30 -> by time A, C, then B and D tied at 30: file order puts D last.
    # u2 has 2 interactions (< 3): train only. u3: exactly 3.
    log = build_interactions(
        "t",
        raw_log(
            [
                ("u1", "A", 10),
                ("u1", "B", 30),
                ("u2", "A", 5),
                ("u1", "C", 20),
                ("u3", "C", 1),
                ("u1", "D", 30),
                ("u2", "B", 6),
                ("u3", "A", 2),
                ("u3", "B", 3),
            ]
        ),
    )
    split = leave_last_out(log, min_interactions=3)
    item = {name: i for i, name in enumerate(log.catalog.item_ids.tolist())}
    user = {name: i for i, name in enumerate(log.user_ids.tolist())}
    assert split.test_users.tolist() == [user["u1"], user["u3"]]
    assert split.test_items.tolist() == [item["D"], item["B"]]
    assert split.valid_items.tolist() == [item["B"], item["A"]]
    assert split.history(user["u1"]).tolist() == [item["A"], item["C"]]  # validation item B excluded
    assert split.history(user["u2"]).tolist() == [item["A"], item["B"]]  # train-only user keeps all
    assert split.history(user["u3"]).tolist() == [item["C"]]
    assert split.train_timestamps.tolist() == [10, 20, 5, 6, 1]


def test_with_validation_items_trains_on_every_validation_item_but_the_held_out_users():
    # u1: A B C D E (valid D, test E); u2: A B (train only); u3: C A B (valid A, test B);
    # u4: B C D (valid C, test D). Held out: u3, so u1's D and u4's C join their train items.
    rows = [("u1", x, t) for t, x in enumerate("ABCDE")] + [("u2", "A", 1), ("u2", "B", 2)]
    rows += [("u3", x, t) for t, x in enumerate("CAB")] + [("u4", x, 10 + t) for t, x in enumerate("BCD")]
    log = build_interactions("t", raw_log(rows))
    split = leave_last_out(log, min_interactions=3)
    item = {name: i for i, name in enumerate(log.catalog.item_ids.tolist())}
    user = {name: i for i, name in enumerate(log.user_ids.tolist())}
    fit = with_validation_items(split, np.array([user["u3"]]))
    named = {u: [log.catalog.item_ids[i] for i in fit.history(user[u])] for u in ("u1", "u2", "u3", "u4")}
    assert named == {"u1": list("ABCD"), "u2": list("AB"), "u3": ["C"], "u4": list("BC")}
    assert fit.train_timestamps[fit.train_indptr[user["u4"]] :][:2].tolist() == [10, 10]  # after its last
    assert fit.valid_users.tolist() == [user["u3"]] and fit.valid_items.tolist() == [item["A"]]
    assert fit.test_users.tolist() == [user["u3"]] and fit.test_items.tolist() == [item["B"]]
    assert len(fit.train_weights) == len(fit.train_items) == len(split.train_items) + 2
    # Holding everyone out is the split itself.
    same = with_validation_items(split, split.valid_users)
    assert same.train_items.tolist() == split.train_items.tolist()
    assert same.valid_items.tolist() == split.valid_items.tolist()
