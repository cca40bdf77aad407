"""Extra item columns (`data.item_columns.extra`: title, url, ...) pass through the catalogue untouched,
so the published version can return them in answers (`fields`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import ItemColumnMap
from training.data.indexing import build_interactions
from training.data.tabular import read_items
from training.data.types import RawLog
from training.export.published_log import manifest_item_extra


def test_extra_columns_follow_the_item_index(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,category,price,title,url\nb,x,2.5,Bee,http://b\na,y,1,Ay,\nc,x,,See,http://c\n")
    raw = read_items(items, ItemColumnMap(extra=["title", "url"]))
    log = RawLog(
        source="log.csv",
        user=np.array(["u1", "u1"]),
        item=np.array(["a", "z"]),
        timestamp=np.array([1, 2]),
        weight=np.ones(2),
    )
    data = build_interactions("t", log, raw)
    ids = data.catalog.item_ids.tolist()  # log order first (a, z), then metadata-only items (b, c)
    assert ids == ["a", "z", "b", "c"]
    assert data.catalog.extra["title"].tolist() == ["Ay", "", "Bee", "See"]  # z has no metadata
    assert data.catalog.extra["url"].tolist() == ["", "", "http://b", "http://c"]
    assert manifest_item_extra(data) == {
        "item_extra": "item_extra.npz",
        "item_extra_columns": ["title", "url"],
    }
