"""training/data/indexing.py: raw ids to indices by first appearance, metadata joined, logs appended."""

from __future__ import annotations

import numpy as np

from tests.fixtures.hand_made import raw_log
from training.data.indexing import append_log, build_interactions, index_ids
from training.data.types import NO_CATEGORY, RawItems


def test_index_ids_numbers_ids_by_first_appearance():
    idx, ids = index_ids(np.array(["b", "a", "b", "c", "a"]))
    assert idx.tolist() == [0, 1, 0, 2, 1]
    assert ids.tolist() == ["b", "a", "c"]
    assert idx.dtype == np.int64


def test_build_interactions_joins_metadata_and_keeps_catalog_only_items():
    items = RawItems(
        source="items",
        item=np.array(["B", "Z", "A"]),
        category=np.array(["shoes", "hats", ""]),
        price=np.array([9.5, 3.0, np.nan], dtype=np.float32),
    )
    log = build_interactions("t", raw_log([("u1", "A", 1), ("u2", "B", 2), ("u1", "C", 3)]), items)
    assert log.catalog.item_ids.tolist() == ["A", "B", "C", "Z"]  # log order, then catalog-only
    assert log.catalog.categories == ["hats", "shoes"]  # sorted
    assert log.catalog.category.tolist() == [NO_CATEGORY, 1, NO_CATEGORY, 0]
    np.testing.assert_array_equal(log.catalog.price, np.array([np.nan, 9.5, np.nan, 3.0], dtype=np.float32))
    assert log.item.tolist() == [0, 1, 2]
    assert log.user.tolist() == [0, 1, 0]


def test_append_log_reuses_indices_and_adds_new_ids_at_the_end():
    base = build_interactions(
        "t",
        raw_log([("u1", "A", 1), ("u2", "B", 2)]),
        RawItems("items", np.array(["A", "B"]), np.array(["x", "y"]), np.array([1.0, 2.0], dtype=np.float32)),
    )
    out = append_log(base, raw_log([("u2", "N", 5), ("u9", "A", 6), ("u9", "N", 7)], weight=[2.0, 1.0, 3.0]))
    assert out.user_ids.tolist() == ["u1", "u2", "u9"]
    assert out.catalog.item_ids.tolist() == ["A", "B", "N"]
    assert out.user.tolist() == [0, 1, 1, 2, 2]
    assert out.item.tolist() == [0, 1, 2, 0, 2]
    assert out.weight.tolist() == [1.0, 1.0, 2.0, 1.0, 3.0]
    assert out.catalog.category.tolist() == [0, 1, NO_CATEGORY]
    assert np.isnan(out.catalog.price[2]) and out.catalog.price[1] == 2.0
    assert out.catalog.categories == ["x", "y"]


def test_appended_items_have_no_attributes_and_the_fingerprint_sees_attributes():
    items = RawItems(
        source="items", item=np.array(["A", "B"]), category=np.array(["", ""]),
        price=np.array([np.nan, np.nan], np.float32),
        attr_indptr=np.array([0, 1, 2]), attr_tags=np.array(["t1", "t2"]),
    )  # fmt: skip
    base = build_interactions("x", raw_log([("u1", "A", 1), ("u1", "B", 2)]), items)
    grown = append_log(base, raw_log([("u2", "NEW", 3)]))
    indptr, index = grown.catalog.attribute_rows()
    assert indptr.tolist() == [0, 1, 2, 2] and index.tolist() == [0, 1]
    other = RawItems(**{**items.__dict__, "attr_tags": np.array(["t1", "t3"])})
    assert (
        build_interactions("x", raw_log([("u1", "A", 1), ("u1", "B", 2)]), other).fingerprint
        != base.fingerprint
    )
