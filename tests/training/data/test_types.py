"""training/data/types.py on hand-made values: a catalogue's tags, a log's event names and
fingerprint, a split's per-user views.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.fixtures.hand_made import hand_made_log
from training.data.split import leave_last_out
from training.data.types import NO_EVENT, Catalog, DataError


def test_a_data_error_names_file_row_and_column_in_that_order() -> None:
    assert str(DataError("missing user id", file="log.csv", row=3, column="user_id")) == (
        "log.csv, row 3, column 'user_id': missing user id"
    )
    assert str(DataError("no data rows", file="log.csv")) == "log.csv: no data rows"
    assert str(DataError("data.path is required")) == "data.path is required"


def test_items_past_the_stored_tag_rows_have_no_tags() -> None:
    # 4 items; tags stored for the first two only: item 0 -> [1, 0], item 1 -> [2]
    catalog = Catalog(
        item_ids=np.array(["a", "b", "c", "d"]), category=np.zeros(4, np.int32), categories=["x"],
        price=np.ones(4, np.float32), attributes=["brand", "red", "sale"],
        attr_indptr=np.array([0, 2, 3]), attr_index=np.array([1, 0, 2]),
    )  # fmt: skip
    indptr, index = catalog.attribute_rows()
    assert indptr.tolist() == [0, 2, 3, 3, 3] and index.tolist() == [1, 0, 2]
    no_tags = dataclasses.replace(
        catalog, attributes=[], attr_indptr=np.zeros(1, np.int64), attr_index=np.zeros(0)
    )
    assert no_tags.attribute_rows()[0].tolist() == [0, 0, 0, 0, 0]


def test_event_names_read_the_codes_and_leave_untyped_rows_empty() -> None:
    log = hand_made_log([0, 0, 1], [0, 1, 2], 2, 3)
    assert log.event_names() is None
    typed = dataclasses.replace(log, event=np.array([1, NO_EVENT, 0], np.int16), event_types=("view", "buy"))
    assert typed.event_names().tolist() == ["buy", "", "view"]  # type: ignore[union-attr]


def test_the_fingerprint_is_stable_and_sees_every_row_and_the_event_types() -> None:
    log = hand_made_log([0, 0, 1], [0, 1, 2], 2, 3)
    same = hand_made_log([0, 0, 1], [0, 1, 2], 2, 3)
    assert log.fingerprint == same.fingerprint and len(log.fingerprint) == 64
    assert hand_made_log([0, 0, 1], [0, 2, 1], 2, 3).fingerprint != log.fingerprint
    typed = dataclasses.replace(log, event=np.zeros(3, np.int16), event_types=("view",))
    assert typed.fingerprint != log.fingerprint


def test_a_split_gives_each_users_history_oldest_first_and_the_train_counts() -> None:
    # u0: items 0, 1, 2, 3 -> train [0, 1], valid 2, test 3; u1: items 4, 0 (< 3 rows) -> train only
    split = leave_last_out(hand_made_log([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 4, 0], 2, 5))
    assert split.history(0).tolist() == [0, 1] and split.history(1).tolist() == [4, 0]
    assert split.train_users.tolist() == [0, 0, 1, 1]
    assert split.item_popularity().tolist() == [2.0, 1.0, 0.0, 0.0, 1.0]
    assert (split.valid_users.tolist(), split.valid_items.tolist(), split.test_items.tolist()) == (
        [0],
        [2],
        [3],
    )
    none = split.evaluated_rows(np.zeros(1, bool))
    assert len(none.test_users) == 0 and none.train_items is split.train_items  # train arrays shared
