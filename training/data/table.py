"""A CSV, TSV or Parquet file's columns, read with the row number a person would count.

Rows are numbered as a person opening the file would count them: for CSV/TSV the header is row 1
and the first record row 2; Parquet has no header row, so its first record is row 1. Files are read
in chunks of rows (`iter_tables`): CSV through pandas' chunked reader, Parquet through
`ParquetFile.iter_batches`; row numbers stay global across chunks. Validating the values is
training/data/tabular.py's.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.types import DataError

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


def _csv_frames(path: Path, sep: str, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """Raw string frames of the whole file, header line included; the index is the global line - 1."""
    file = str(path)
    try:
        # header=None: we read the header ourselves, since pandas silently renames duplicates.
        # skip_blank_lines=False keeps row numbers equal to what an editor shows.
        reader = pd.read_csv(
            path,
            sep=sep,
            header=None,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            quoting=csv.QUOTE_MINIMAL,
            chunksize=chunk_rows,
        )
        if chunk_rows is None:
            yield reader
            return
        with reader:
            yield from reader
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty (no header, no rows)", file=file) from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse: {exc}".strip(), file=file) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=file) from exc


def _iter_delimited(path: Path, sep: str, wanted: list[str], chunk_rows: int | None) -> Iterator[Table]:
    file = str(path)
    header: list[str] | None = None
    n_records = 0
    for frame in _csv_frames(path, sep, chunk_rows):
        body = frame
        if header is None:
            header = [str(v).strip() for v in frame.iloc[0].tolist()]
            _check_header(file, header, wanted)
            body = frame.iloc[1:]
        blank = (body == "").all(axis=1).to_numpy()  # empty lines: not records, nothing is lost
        if blank.all():
            continue
        body = body[~blank]
        n_records += len(body)
        rows = body.index.to_numpy(dtype=np.int64) + 1  # index 0 is the header, row 1
        columns = {name: body[header.index(name)].reset_index(drop=True) for name in wanted}
        yield Table(file=file, columns=columns, rows=rows)
    if n_records == 0:
        raise DataError("no data rows (only a header)", file=file)


def _iter_parquet(path: Path, wanted: list[str], chunk_rows: int | None) -> Iterator[Table]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = str(path)
    try:
        parquet = pq.ParquetFile(path)
        _check_header(file, parquet.schema_arrow.names, wanted)
        n_rows = parquet.metadata.num_rows
        if n_rows == 0:
            raise DataError("no data rows", file=file)
        offset = 0
        for batch in parquet.iter_batches(batch_size=chunk_rows or n_rows, columns=wanted):
            columns = {name: batch.column(name).to_pandas() for name in wanted}
            rows = np.arange(offset + 1, offset + batch.num_rows + 1, dtype=np.int64)
            offset += batch.num_rows
            yield Table(file=file, columns=columns, rows=rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read as Parquet: {exc}", file=file) from exc


def iter_tables(path: Path, wanted: list[str], chunk_rows: int | None = None) -> Iterator[Table]:
    """The named columns of a CSV/TSV/Parquet file, `chunk_rows` rows at a time (None: all at once).

    For CSV/TSV a chunk is `chunk_rows` lines (the header and blank lines count, so a chunk may hold
    fewer records); chunks hold at least one record each; row numbers are global. DataError on anything unusable,
    raised when the reader reaches it (a malformed line in the tenth chunk fails after nine chunks).
    """
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path))
    if path.stat().st_size == 0:
        raise DataError("the file is empty (no header, no rows)", file=str(path))
    if kind == "parquet":
        return _iter_parquet(path, wanted, chunk_rows)
    return _iter_delimited(path, _SEPARATORS[kind], wanted, chunk_rows)


def read_table(path: Path, wanted: list[str]) -> Table:
    """Read the named columns of a whole CSV/TSV/Parquet file; DataError on anything unusable."""
    tables = list(iter_tables(path, wanted, None))
    if len(tables) == 1:
        return tables[0]
    return Table(
        file=tables[0].file,
        columns={name: pd.concat([t.columns[name] for t in tables], ignore_index=True) for name in wanted},
        rows=np.concatenate([t.rows for t in tables]),
    )


def header_columns(path: Path) -> list[str]:
    """The column names of a CSV/TSV/Parquet file (its header, or its schema)."""
    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (OSError, ValueError) as exc:
            raise DataError(f"not a readable Parquet file: {exc}", file=str(path)) from exc
    frame = next(iter(_csv_frames(path, _SEPARATORS[kind], 1)))
    return [str(v).strip() for v in frame.iloc[0].tolist()]
