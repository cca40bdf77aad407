"""The user's own interaction log and item metadata, validated column by column.

pandas/pyarrow do the parsing (training/data/table.py reads the file's columns with their row
numbers); validation is ours, so that every error names the file, the row and the column. Every
check works row by row, so a file gives the same result and the same first error whatever the chunk
size (`iter_log`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import ColumnMap, ItemColumnMap
from training.data.table import Table, header_columns, iter_tables, read_table
from training.data.types import DataError, RawItems, RawLog

logger = logging.getLogger(__name__)


def _fail_at(table: Table, bad: np.ndarray, column: str, message: str) -> None:
    """Raise for the first True in `bad`, naming its row; `message` may use {value}."""
    if bad.any():
        i = int(np.argmax(bad))
        value = table.columns[column].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value  # 'x', not np.str_('x')
        raise DataError(message.format(value=value), file=table.file, row=int(table.rows[i]), column=column)


def _is_missing(values: pd.Series) -> np.ndarray:
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()
    return values.isna().to_numpy()


def parse_ids(table: Table, column: str, what: str) -> np.ndarray:
    """str [n]: ids as strings, surrounding whitespace removed. Integer ids keep no '.0'."""
    return parse_id_strings(table, column, what).to_numpy(dtype=str)


def parse_id_strings(table: Table, column: str, what: str) -> pd.Series:
    """Like `parse_ids`, as a pandas string Series: no per-row numpy/Python string objects."""
    values = table.columns[column]
    _fail_at(table, _is_missing(values), column, f"missing {what} id")
    if pd.api.types.is_float_dtype(values):
        # Parquet ints stored as float: 12.0 -> "12". Decided per value, not per column, so that the
        # result cannot depend on which other values share a chunk.
        numbers = values.to_numpy(dtype=np.float64)
        text = values.astype(str).to_numpy(dtype=object)
        whole = (numbers % 1 == 0) & (np.abs(numbers) < 2.0**63)
        text[whole] = numbers[whole].astype(np.int64).astype(str)
        return pd.Series(text, dtype=str)
    return values.astype(str).str.strip()


def _plain_floats(values: pd.Series) -> np.ndarray | None:
    """float64 [n] when every string is a plain finite number, else None (the caller's slow path).

    Arrow's cast is ~50x faster than pd.to_numeric on a million strings; where it gives finite
    numbers they are the ones to_numeric gives, and anything else keeps the checked path and its
    messages, so results and errors do not change.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pd.api.types.is_string_dtype(values) or values.isna().any():
        return None
    try:
        text = pa.array(values.astype(str).str.strip().array)
        numbers = np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return None
    return numbers if np.isfinite(numbers).all() else None


def parse_numbers(table: Table, column: str, what: str, *, allow_missing: bool) -> np.ndarray:
    """float64 [n]: finite, non-negative numbers; NaN for empty cells when `allow_missing`."""
    values = table.columns[column]
    missing = _is_missing(values)
    if not allow_missing:
        _fail_at(table, missing, column, f"missing {what}")
    if pd.api.types.is_bool_dtype(values):
        _fail_at(table, np.ones(len(values), bool), column, f"{what} is not a number: {{value!r}}")
    numbers = None if missing.any() else _plain_floats(values)
    if numbers is None:
        numbers = pd.to_numeric(values.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    _fail_at(table, np.isnan(numbers) & ~missing, column, f"{what} is not a number: {{value!r}}")
    _fail_at(table, np.isinf(numbers), column, f"{what} must be finite, got {{value!r}}")
    _fail_at(table, numbers < 0, column, f"{what} must not be negative, got {{value!r}}")
    return numbers


MAX_EPOCH_SECONDS = 1e11  # year 5138
_EPOCH = pd.Timestamp(0, tz="UTC")
_SECOND = pd.Timedelta(seconds=1)


def parse_timestamps(table: Table, column: str) -> np.ndarray:
    """int64 [n] epoch seconds from epoch numbers (floored) or ISO-8601 strings (naive = UTC)."""
    values = table.columns[column]
    _fail_at(table, _is_missing(values), column, "missing timestamp")
    if pd.api.types.is_datetime64_any_dtype(values):  # Parquet timestamp columns
        stamps = pd.to_datetime(values, utc=True)
        return ((stamps - _EPOCH) // _SECOND).to_numpy(dtype=np.int64)
    if pd.api.types.is_bool_dtype(values):
        _fail_at(table, np.ones(len(values), bool), column, "not a timestamp: {value!r}")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
    elif (plain := _plain_floats(values)) is not None:
        numbers = plain
    else:
        text = values.astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        iso = np.isnan(numbers)
        if iso.any():
            stamps = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
            bad = np.zeros(len(values), bool)
            bad[iso] = stamps.isna().to_numpy()
            _fail_at(
                table,
                bad,
                column,
                "not a timestamp: {value!r} (expected epoch seconds or ISO-8601, e.g. 2024-05-01T12:30:00Z)",
            )
            numbers[iso] = ((stamps - _EPOCH) // _SECOND).to_numpy(dtype=np.float64)
    _fail_at(table, ~np.isfinite(numbers), column, "not a timestamp: {value!r}")
    # Epoch milliseconds read as seconds would land after the year 5000: refuse rather than guess.
    _fail_at(
        table,
        np.abs(numbers) >= MAX_EPOCH_SECONDS,
        column,
        "{value!r} is too large for epoch seconds (milliseconds?)",
    )
    return np.floor(numbers).astype(np.int64)


def log_columns(columns: ColumnMap) -> list[str]:
    """The file columns an interaction log needs, each once, in a fixed order."""
    wanted = [columns.user, columns.item, columns.timestamp]
    return wanted + [name for name in (columns.weight, columns.event) if name and name not in wanted]


def parse_event_weights(table: Table, column: str, event_weights: Mapping[str, float]) -> np.ndarray:
    """float64 [n]: each row's event weight (1.0 when `event_weights` is empty); every event non-empty."""
    values = table.columns[column]
    _fail_at(table, _is_missing(values), column, "missing event type")
    if not event_weights:
        return np.ones(len(table))
    events = values.astype(str).str.strip()
    known = events.isin(list(event_weights)).to_numpy()
    _fail_at(
        table,
        ~known,
        column,
        f"unknown event type {{value!r}}; data.event_weights has {sorted(event_weights)}",
    )
    return events.map(dict(event_weights)).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class LogChunk:
    """One validated chunk of a log, in file order.

    Ids stay pandas strings: turning every row into a numpy string costs more than the rest of the
    read, and the id maps (training/data/stream.py) only need each distinct id once.
    """

    source: str
    user: pd.Series  # str [n], stripped
    item: pd.Series  # str [n], stripped
    timestamp: np.ndarray  # int64 [n]
    weight: np.ndarray  # float32 [n]
    event: pd.Series | None = None  # str [n], stripped: the event column (None: data.columns.event unset)

    def __len__(self) -> int:
        return len(self.timestamp)


def parse_log(table: Table, columns: ColumnMap, event_weights: Mapping[str, float] | None = None) -> LogChunk:
    """Validate one table (or chunk) of a log; weight = weight column (or 1.0) x event weight."""
    user = parse_id_strings(table, columns.user, "user")
    item = parse_id_strings(table, columns.item, "item")
    timestamp = parse_timestamps(table, columns.timestamp)
    if columns.weight:
        weight = parse_numbers(table, columns.weight, "weight", allow_missing=False)
    else:
        weight = np.ones(len(table))
    event = None
    if columns.event:
        weight = weight * parse_event_weights(table, columns.event, event_weights or {})
        event = table.columns[columns.event].astype(str).str.strip()
    return LogChunk(
        source=table.file,
        user=user,
        item=item,
        timestamp=timestamp,
        weight=weight.astype(np.float32),
        event=event,
    )


def iter_log(
    path: Path,
    columns: ColumnMap,
    *,
    chunk_rows: int | None = None,
    event_weights: Mapping[str, float] | None = None,
) -> Iterator[LogChunk]:
    """A log's validated chunks in file order (see `iter_tables`); only one chunk of strings is alive."""
    n = 0
    file = str(path)
    for table in iter_tables(path, log_columns(columns), chunk_rows):
        file = table.file
        n += len(table)
        yield parse_log(table, columns, event_weights)
    logger.info("read %s: %d interactions", file, n)


def read_log(
    path: Path,
    columns: ColumnMap,
    *,
    chunk_rows: int | None = None,
    event_weights: Mapping[str, float] | None = None,
) -> RawLog:
    """A whole interaction log with raw string ids; weight 1.0 when no weight column.

    With an event column every event must be non-empty; with `event_weights` it must also be listed
    there, and its weight multiplies the row's weight. For big logs use `training.data.stream` instead.
    """
    chunks = list(iter_log(path, columns, chunk_rows=chunk_rows, event_weights=event_weights))
    return RawLog(
        source=chunks[0].source,
        user=np.concatenate([c.user.to_numpy(dtype=str) for c in chunks]),
        item=np.concatenate([c.item.to_numpy(dtype=str) for c in chunks]),
        timestamp=np.concatenate([c.timestamp for c in chunks]),
        weight=np.concatenate([c.weight for c in chunks]),
        event=None
        if columns.event is None
        else np.concatenate([c.event.to_numpy(dtype=str) for c in chunks]),  # type: ignore[union-attr]
    )


def _item_fields(path: Path, columns: ItemColumnMap) -> dict[str, str]:
    """Metadata field -> column to read. A column the user named must exist; a default name that the
    file lacks (e.g. no `price` column) just means the file has no such field."""
    named = columns.model_fields_set
    found = set(header_columns(path))
    fields = {}
    for name in ("category", "price", "attributes"):
        column = getattr(columns, name)
        if column and (name in named or column in found):
            fields[name] = column
    return fields


def parse_attributes(table: Table, column: str, separator: str) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each row's tags: (indptr int64 [n + 1], tags str [nnz]); empty cell = no tags.

    Tags are stripped, empty ones dropped and repeats within a row kept once (first occurrence).
    """
    values = table.columns[column]
    cells = np.where(_is_missing(values), "", values.astype(str).to_numpy(dtype=str))
    rows: list[list[str]] = []
    for cell in cells.tolist():
        tags = [t.strip() for t in cell.split(separator)] if cell else []
        rows.append(list(dict.fromkeys(t for t in tags if t)))
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    flat = [t for r in rows for t in r]
    return indptr, np.asarray(flat, dtype=str) if flat else np.zeros(0, dtype=str)


def read_items(path: Path, columns: ItemColumnMap, attribute_separator: str = "|") -> RawItems:
    """Item metadata: unique item ids, optional category (empty = unknown), price (empty = NaN) and
    multi-valued attributes (`attribute_separator`-separated tags, e.g. brand|category path|tags)."""
    fields = _item_fields(Path(path), columns)
    wanted = [columns.item] + list(fields.values()) + [c for c in columns.extra if c not in fields.values()]
    table = read_table(path, wanted)
    item = parse_ids(table, columns.item, "item")
    duplicated = pd.Series(item).duplicated().to_numpy()
    if duplicated.any():
        i = int(np.argmax(duplicated))
        first = int(table.rows[int(np.argmax(item == item[i]))])
        raise DataError(
            f"duplicate item id {str(item[i])!r} (first seen in row {first})",
            file=table.file,
            row=int(table.rows[i]),
            column=columns.item,
        )
    if "category" in fields:
        values = table.columns[fields["category"]]
        category = np.where(_is_missing(values), "", values.astype(str).str.strip().to_numpy(dtype=str))
    else:
        category = np.full(len(table), "", dtype=str)
    if "price" in fields:
        price = parse_numbers(table, fields["price"], "price", allow_missing=True)
    else:
        price = np.full(len(table), np.nan)
    attr_indptr = attr_tags = None
    if "attributes" in fields:
        attr_indptr, attr_tags = parse_attributes(table, fields["attributes"], attribute_separator)
    extra = {}
    for name in columns.extra:  # passed through as text; an empty cell is ""
        values = table.columns[name]
        extra[name] = np.where(_is_missing(values), "", values.astype(str).str.strip().to_numpy(dtype=str))
    return RawItems(
        source=table.file, item=item, category=category.astype(str), price=price.astype(np.float32),
        attr_indptr=attr_indptr, attr_tags=attr_tags, extra=extra,
    )  # fmt: skip
