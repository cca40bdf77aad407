"""Id maps merged by raw id and the tables that follow them, on hand-made ids and rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.types import Catalog
from training.warm.remap import index_map, item_tags, remap_item_table, remap_table, tag_initialised_rows


def test_index_map_finds_each_new_id_in_the_old_map_and_marks_the_rest() -> None:
    old = np.array(["b", "a", "c"])
    assert index_map(old, np.array(["a", "x", "c", "b", "y"])).tolist() == [1, -1, 2, 0, -1]
    assert index_map(np.array([], dtype=str), np.array(["a"])).tolist() == [-1]


def test_remap_table_copies_old_rows_to_their_new_index_and_keeps_the_special_rows() -> None:
    old = torch.tensor([[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])  # items 0, 1, then the padding row
    fresh = torch.full((4, 2), -1.0)  # three items now, then the padding row
    out = remap_table(old, np.array([1, -1, 0]), fresh)
    assert out.tolist() == [[2.0, 2.0], [-1.0, -1.0], [1.0, 1.0], [9.0, 9.0]]
    assert fresh.tolist() == [[-1.0, -1.0]] * 4  # the fresh table is not written into


def test_remap_table_refuses_a_table_of_another_width() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        remap_table(torch.zeros(3, 2), np.array([0, 1]), torch.zeros(3, 4))


def _catalog(category: list[int], tags: list[list[int]], n_categories: int = 2, n_attrs: int = 3) -> Catalog:
    indptr = np.cumsum([0, *(len(t) for t in tags)]).astype(np.int64)
    return Catalog(
        item_ids=np.array([f"i{i}" for i in range(len(category))]),
        category=np.array(category, dtype=np.int32),
        categories=[f"c{i}" for i in range(n_categories)],
        price=np.full(len(category), np.nan, np.float32),
        attributes=[f"a{i}" for i in range(n_attrs)],
        attr_indptr=indptr,
        attr_index=np.array([t for row in tags for t in row], dtype=np.int64),
    )


def test_item_tags_are_the_category_then_the_attributes_offset_past_the_categories() -> None:
    catalog = _catalog([1, -1, 0], [[0, 2], [1], []])
    indptr, tags = item_tags(catalog)
    assert [tags[indptr[i] : indptr[i + 1]].tolist() for i in range(3)] == [[1, 2, 4], [3], [0]]


def test_a_new_item_starts_at_the_mean_of_its_tags_centroids() -> None:
    # Items 0 and 1 are known (old rows 0 and 1); item 2 is new with category 0 and attribute 2;
    # item 3 is new with a tag no known item carries.
    catalog = _catalog([0, 1, 0, -1], [[2], [2], [2], [1]])
    rows = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    mapping = np.array([0, 1, -1, -1])
    out, got = tag_initialised_rows(rows, mapping, catalog)
    # category 0: only item 0 -> [2, 0]; attribute 2: items 0 and 1 -> [1, 2]; mean -> [1.5, 1]
    assert out[2].tolist() == [1.5, 1.0]
    assert got.tolist() == [False, False, True, False]
    table, n = remap_item_table(
        torch.tensor([[2.0, 0.0], [0.0, 4.0], [0.0, 0.0]]), mapping, torch.full((5, 2), 7.0), catalog
    )
    assert n == 1
    assert table.tolist() == [[2.0, 0.0], [0.0, 4.0], [1.5, 1.0], [7.0, 7.0], [0.0, 0.0]]
