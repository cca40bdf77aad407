"""The item file a retrain reads: the configured one (every column, tags included) with the live
catalogue's category, price and fields laid over it, and registered products appended."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.config import DataConfig
from training.data.overlay import ItemUpdate, write_item_overlay
from training.data.tabular import read_items


def test_the_overlay_replaces_what_it_names_and_appends_new_products(tmp_path: Path) -> None:
    items = tmp_path / "products.csv"
    items.write_text("sku,cat,cost,attributes,title\np1,shoes,10.0,brandA|red,Boot\np2,hats,5.0,brandB,Cap\n")
    cfg = DataConfig(
        source="file", path=tmp_path / "log.csv", items_path=items,
        item_columns={"item": "sku", "category": "cat", "price": "cost", "extra": ["title"]},
    )  # fmt: skip
    updates = [
        ItemUpdate("p2", price=4.5),
        ItemUpdate(
            "p9", category="shoes", price=20.0, fields={"attributes": "brandA|blue", "title": "Sneaker"}
        ),
    ]
    out = tmp_path / "overlay.csv"
    assert write_item_overlay(cfg, updates, out) == 1
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert frame.to_dict("records") == [
        {"sku": "p1", "cat": "shoes", "cost": "10.0", "attributes": "brandA|red", "title": "Boot"},
        {"sku": "p2", "cat": "hats", "cost": "4.5", "attributes": "brandB", "title": "Cap"},
        {"sku": "p9", "cat": "shoes", "cost": "20.0", "attributes": "brandA|blue", "title": "Sneaker"},
    ]
    raw = read_items(out, cfg.item_columns, "|")  # the trainer reads it with the same columns
    assert raw.item.tolist() == ["p1", "p2", "p9"] and raw.price.tolist() == [10.0, 4.5, 20.0]


def test_without_an_item_file_the_overlay_alone_becomes_one(tmp_path: Path) -> None:
    cfg = DataConfig(source="file", path=tmp_path / "log.csv")
    out = tmp_path / "overlay.csv"
    assert write_item_overlay(cfg, [ItemUpdate("new", category="toys")], out) == 1
    assert pd.read_csv(out, dtype=str, keep_default_na=False).to_dict("records") == [
        {"item_id": "new", "category": "toys", "price": ""}
    ]
