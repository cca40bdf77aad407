"""Read the user's own interaction log and item metadata from CSV, TSV or Parquet.

pandas/pyarrow do the parsing; validation is ours so that every error names the file, the row and
the column. Rows are numbered as a person opening the file would count them: for CSV/TSV the
header is row 1 and the first record row 2; Parquet has no header row, so its first record is row 1.
The whole file is read into memory (streaming huge files is a later issue).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import ColumnMap, ItemColumnMap
from training.data import DataError, RawItems, RawLog

logger = logging.getLogger(__name__)

_SEPARATORS = {".csv": ",", ".tsv": "\t"}
_COMPRESSION = {".gz", ".bz2", ".zip", ".xz", ".zst"}
SUPPORTED = ".csv, .tsv (optionally compressed: .gz, .bz2, .zip, .xz, .zst) and .parquet"


@dataclass(frozen=True)
class Table:
    """The requested columns of one file, with the row number of each record for messages."""

    file: str
    columns: dict[str, pd.Series]  # name -> values, in file order
    rows: np.ndarray  # int64 [n]: the row number a person would see (see the module docstring)

    def __len__(self) -> int:
        return len(self.rows)


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return "parquet"
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SEPARATORS:
        return suffixes[-1]
    raise DataError(f"unsupported file type; expected {SUPPORTED}", file=str(path))


def _check_header(file: str, found: list[str], wanted: list[str]) -> None:
    seen: set[str] = set()
    for name in found:
        if name in seen:
            raise DataError(f"duplicate column name {name!r} in the header", file=file)
        seen.add(name)
    for name in wanted:
        if name not in seen:
            raise DataError(f"missing column {name!r}; columns found: {found}", file=file, column=name)


def _read_delimited(path: Path, sep: str, wanted: list[str]) -> Table:
    file = str(path)
    try:
        # header=None: we read the header ourselves, since pandas silently renames duplicates.
        # skip_blank_lines=False keeps row numbers equal to what an editor shows.
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty (no header, no rows)", file=file) from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse: {exc}".strip(), file=file) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=file) from exc
    header = [str(v).strip() for v in frame.iloc[0].tolist()]
    _check_header(file, header, wanted)
    body = frame.iloc[1:]
    blank = (body == "").all(axis=1).to_numpy()  # empty lines: not records, nothing is lost
    body = body[~blank]
    if len(body) == 0:
        raise DataError("no data rows (only a header)", file=file)
    rows = np.flatnonzero(~blank).astype(np.int64) + 2  # header is row 1
    columns = {name: body[header.index(name)].reset_index(drop=True) for name in wanted}
    return Table(file=file, columns=columns, rows=rows)


def _read_parquet(path: Path, wanted: list[str]) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = str(path)
    try:
        names = pq.read_schema(path).names
        _check_header(file, names, wanted)
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read as Parquet: {exc}", file=file) from exc
    if table.num_rows == 0:
        raise DataError("no data rows", file=file)
    columns = {name: table.column(name).to_pandas() for name in wanted}
    return Table(file=file, columns=columns, rows=np.arange(1, table.num_rows + 1, dtype=np.int64))


def read_table(path: Path, wanted: list[str]) -> Table:
    """Read the named columns of a CSV/TSV/Parquet file; DataError on anything unusable."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path))
    if path.stat().st_size == 0:
        raise DataError("the file is empty (no header, no rows)", file=str(path))
    if kind == "parquet":
        return _read_parquet(path, wanted)
    return _read_delimited(path, _SEPARATORS[kind], wanted)


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
    values = table.columns[column]
    _fail_at(table, _is_missing(values), column, f"missing {what} id")
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        values = values.astype(np.int64)  # Parquet ints stored as float: 12.0 -> "12"
    return values.astype(str).str.strip().to_numpy(dtype=str)


def parse_numbers(table: Table, column: str, what: str, *, allow_missing: bool) -> np.ndarray:
    """float64 [n]: finite, non-negative numbers; NaN for empty cells when `allow_missing`."""
    values = table.columns[column]
    missing = _is_missing(values)
    if not allow_missing:
        _fail_at(table, missing, column, f"missing {what}")
    if pd.api.types.is_bool_dtype(values):
        _fail_at(table, np.ones(len(values), bool), column, f"{what} is not a number: {{value!r}}")
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


def read_log(path: Path, columns: ColumnMap) -> RawLog:
    """An interaction log with the columns named by `columns`; weight 1.0 when no weight column.

    The optional event column is checked to exist and be non-empty; it does not change weights yet.
    """
    wanted = [columns.user, columns.item, columns.timestamp]
    wanted += [name for name in (columns.weight, columns.event) if name and name not in wanted]
    table = read_table(path, wanted)
    user = parse_ids(table, columns.user, "user")
    item = parse_ids(table, columns.item, "item")
    timestamp = parse_timestamps(table, columns.timestamp)
    if columns.weight:
        weight = parse_numbers(table, columns.weight, "weight", allow_missing=False)
    else:
        weight = np.ones(len(table))
    if columns.event:
        _fail_at(table, _is_missing(table.columns[columns.event]), columns.event, "missing event type")
    logger.info("read %s: %d interactions", table.file, len(table))
    return RawLog(
        source=table.file,
        user=user,
        item=item,
        timestamp=timestamp,
        weight=weight.astype(np.float32),
    )


def read_items(path: Path, columns: ItemColumnMap) -> RawItems:
    """Item metadata: unique item ids, optional category (empty = unknown) and price (empty = NaN)."""
    wanted = [columns.item] + [name for name in (columns.category, columns.price) if name]
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
    if columns.category:
        values = table.columns[columns.category]
        category = np.where(_is_missing(values), "", values.astype(str).str.strip().to_numpy(dtype=str))
    else:
        category = np.full(len(table), "", dtype=str)
    if columns.price:
        price = parse_numbers(table, columns.price, "price", allow_missing=True)
    else:
        price = np.full(len(table), np.nan)
    return RawItems(
        source=table.file, item=item, category=category.astype(str), price=price.astype(np.float32)
    )
