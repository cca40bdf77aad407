"""Export the catalogue as the service knows it now, as the item file the next retrain reads
(`data.items_path`): the served version's items with the live overlay applied, then the items
operators registered that no version knows yet.

Columns: item_id, category, price, available, then the extra columns (the version's, in its
order, then the registered items' own field names, sorted). The trainer reads item_id, category,
price and `attributes` (when a field of that name holds tags) by default, and any extra column it
is told to pass through (`data.item_columns.extra`); `available` is for people. A published version
does not keep the items' attribute tags, so the trained items' rows carry none: a retrain that
uses tags should keep reading its own item file and take the new rows from this one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from app.config import Settings
from app.engine.loading import read_item_extra
from app.stores.events_export import write_csv
from app.stores.factory import open_catalogue
from app.stores.records import CatalogueEntry
from core.manifest import ManifestError, load_manifest

FIXED_COLUMNS = ("item_id", "category", "price", "available")


def _array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read as .npy: {exc}") from exc


def _price(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def catalogue_rows(
    version_dir: Path, entries: dict[str, CatalogueEntry]
) -> tuple[list[str], list[list[object]]]:
    """(columns, rows) of the version's catalogue with `entries` applied, then the registered items."""
    manifest = load_manifest(version_dir)
    item_ids = _array(version_dir / manifest.item_ids).astype(str).tolist()
    codes = _array(version_dir / manifest.item_category).astype(np.int64).tolist()
    prices = _array(version_dir / manifest.item_price).astype(np.float64).tolist()
    try:
        names = json.loads((version_dir / manifest.categories).read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{version_dir / manifest.categories}: not readable JSON: {exc}") from exc
    extra = read_item_extra(version_dir, manifest, len(item_ids))
    known = set(item_ids)
    new = sorted(item for item in entries if item not in known)
    own = sorted({name for e in entries.values() for name in e.fields} - set(extra))
    columns = [*FIXED_COLUMNS, *extra, *own]
    rows: list[list[object]] = []
    for i, item in enumerate(item_ids):
        entry = entries.get(item, CatalogueEntry(item))
        category = (
            entry.category if entry.category is not None else (names[codes[i]] if codes[i] >= 0 else "")
        )
        price = entry.price if entry.price is not None else prices[i]
        fields = {name: str(column[i]) for name, column in extra.items()} | entry.fields
        rows.append([item, category, _price(price), _flag(entry.available), *_cells(fields, extra, own)])
    for item in new:
        e = entries[item]
        rows.append(
            [item, e.category or "", _price(e.price), _flag(e.available), *_cells(e.fields, extra, own)]
        )
    return columns, rows


def _flag(available: bool) -> str:
    return "true" if available else "false"


def _cells(fields: dict[str, str], *column_groups: Iterable[str]) -> list[str]:
    return [fields.get(name, "") for group in column_groups for name in group]


def export_catalogue(settings: Settings, version: str, out_csv: Path) -> tuple[int, int]:
    """Write `version`'s catalogue with the overlay of the store the settings select (SQLite state db
    or Redis); returns (rows written, registered items among them)."""
    version_dir = settings.models_dir / version
    if not (version_dir / "manifest.json").is_file():
        raise FileNotFoundError(f"{version_dir}: no published version there")
    store = open_catalogue(settings)
    try:
        entries = store.snapshot().entries
    finally:
        store.close()
    columns, rows = catalogue_rows(version_dir, entries)
    return write_csv(out_csv, rows, columns), sum(1 for e in entries.values() if e.registered)
