"""The item file a retrain reads: the configured one with the live catalogue's word laid over it.

Operators change prices and categories and register products no version knows yet (the service's
catalogue overlay, app/engine/catalogue_edits.py). The next retrain should learn from the catalogue as
it is now, and a new product's category and tags are what its first rows start from
(training/warm/remap.py). `write_item_overlay` writes a new item file in the configured file's own
columns (`data.item_columns`), every column of it kept (tags included, which a published version
does not keep): each overlay entry's category, price and named fields replace the file's values,
and the items the file lacks (registered ones) are appended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.files import open_atomic
from training.config import DataConfig
from training.data.table import header_columns, read_table


@dataclass(frozen=True)
class ItemUpdate:
    """One overlay entry: None keeps the file's value (app.stores.records.CatalogueEntry, as plain data)."""

    item_id: str
    category: str | None = None
    price: float | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _base_frame(cfg: DataConfig) -> pd.DataFrame:
    """The configured item file, every column as text; an empty frame of its columns when there is none."""
    cols = cfg.item_columns
    if cfg.items_path is None:
        names = [cols.item, *(c for c in (cols.category, cols.price) if c)]
        return pd.DataFrame({name: pd.Series(dtype=str) for name in names})
    names = header_columns(Path(cfg.items_path))
    table = read_table(Path(cfg.items_path), names)
    return pd.DataFrame({name: table.columns[name].astype(object).fillna("").astype(str) for name in names})


def write_item_overlay(cfg: DataConfig, updates: Sequence[ItemUpdate], out: Path) -> int:
    """Write the configured item file with `updates` applied to `out` (CSV, atomically); returns the
    number of items appended. A field an update names becomes a column when the file lacks it."""
    cols = cfg.item_columns
    frame = _base_frame(cfg)
    position = {item: i for i, item in enumerate(frame[cols.item].tolist())}
    rows = frame.to_dict("records")
    appended = 0
    for update in updates:
        values: dict[str, str] = dict(update.fields)
        if update.category is not None and cols.category:
            values[cols.category] = update.category
        if update.price is not None and cols.price and not math.isnan(update.price):
            values[cols.price] = repr(float(update.price))
        if update.item_id in position:
            rows[position[update.item_id]].update(values)
        else:
            position[update.item_id] = len(rows)
            rows.append({cols.item: update.item_id, **values})
            appended += 1
    merged = pd.DataFrame(rows, columns=list(dict.fromkeys([*frame.columns, *(k for r in rows for k in r)])))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(out, "w", newline="") as fh:
        merged.astype(object).fillna("").to_csv(fh, index=False)
    return appended
