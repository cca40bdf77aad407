"""Streaming interaction logs: read files chunk by chunk, map ids in one pass, keep compact arrays.

Why: a log held as a DataFrame of string ids costs well over 100 bytes a row, so a big shop's
history does not fit in memory. Here only one chunk of strings (`data.chunk_rows` rows) is alive at a
time; each chunk is validated (errors keep global row numbers, see training/data/tabular.py), its ids are
mapped to indices by incremental `IdMap`s, and what is kept is int32 user/item indices, int64
timestamps and float32 weights: 20 bytes an interaction, plus the id maps (one entry per distinct id).

The result is identical, fingerprint included, to reading the whole file at once: ids are numbered in
order of first appearance exactly as `index_ids` numbers them, whatever the chunk size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import ColumnMap
from training.data.indexing import event_codes, extend_interactions, make_catalog
from training.data.tabular import iter_log
from training.data.types import Interactions, RawItems

logger = logging.getLogger(__name__)

_INT32_MAX = np.iinfo(np.int32).max


class IdMap:
    """Raw string id -> contiguous index in order of first appearance, grown one chunk at a time.

    Feeding a file's ids through `index` in chunks gives the same indices and `ids()` as `index_ids`
    on the whole column. Backed by a dict: memory grows with distinct ids, not with rows.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._index: dict[str, int] = {}
        for raw in ids:
            self._index.setdefault(str(raw), len(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def index(self, raw: np.ndarray | pd.Series) -> np.ndarray:
        """int64 [n]: the index of each id; ids not seen before get the next indices, in order."""
        if isinstance(raw, np.ndarray) and raw.dtype.kind == "U":
            raw = raw.astype(object)
        codes, uniques = pd.factorize(raw)  # uniques in first-appearance order
        lookup = self._index
        mapped = np.fromiter(
            (lookup.setdefault(u, len(lookup)) for u in uniques.tolist()), dtype=np.int64, count=len(uniques)
        )
        return mapped[codes]

    def ids(self) -> np.ndarray:
        """str [len(self)]: the raw id of each index."""
        return np.array(list(self._index), dtype=str)


class _LogBuffer:
    """Per-chunk arrays kept as compactly as the contract allows, joined into int64/float32 at the end."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {
            "user": [], "item": [], "timestamp": [], "weight": [], "event": [],
        }  # fmt: skip

    def add(
        self,
        user: np.ndarray,
        item: np.ndarray,
        timestamp: np.ndarray,
        weight: np.ndarray,
        event: np.ndarray | None = None,
    ) -> None:
        self._parts["user"].append(_compact(user))
        self._parts["item"].append(_compact(item))
        self._parts["timestamp"].append(np.asarray(timestamp, dtype=np.int64))
        self._parts["weight"].append(np.asarray(weight, dtype=np.float32))
        if event is not None:  # every file has the event column, or none does (data.columns.event)
            self._parts["event"].append(np.asarray(event, dtype=np.int16))

    def events(self) -> np.ndarray | None:
        """int16 [n]: the event codes (None when no chunk had an event column); empties that part."""
        return self._join("event", np.int16) if self._parts["event"] else None

    def _join(self, key: str, dtype: type) -> np.ndarray:
        parts = self._parts[key]
        out: np.ndarray = np.concatenate(parts, dtype=dtype) if parts else np.zeros(0, dtype=dtype)
        parts.clear()  # one column at a time: the peak is the chunks plus one joined column
        return out

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user int64, item int64, timestamp int64, weight float32), each [n]; empties the buffer."""
        return (
            self._join("user", np.int64),
            self._join("item", np.int64),
            self._join("timestamp", np.int64),
            self._join("weight", np.float32),
        )


def _compact(indices: np.ndarray) -> np.ndarray:
    if len(indices) and int(indices.max()) > _INT32_MAX:
        return indices
    return indices.astype(np.int32)


@dataclass
class _Reader:
    """One streaming pass over a source and its appended logs: the id maps and buffer every file grows."""

    columns: ColumnMap
    chunk_rows: int
    event_weights: Mapping[str, float] | None
    users: IdMap = field(default_factory=IdMap)
    items: IdMap = field(default_factory=IdMap)
    buffer: _LogBuffer = field(default_factory=_LogBuffer)
    events: IdMap = field(default_factory=IdMap)  # event type -> code (data.columns.event)

    def read(self, path: Path) -> int:
        """Stream one file into the buffer, growing the id maps; returns the number of interactions read."""
        n = 0
        chunks = iter_log(path, self.columns, chunk_rows=self.chunk_rows, event_weights=self.event_weights)
        for chunk in chunks:
            event = None if chunk.event is None else self.events.index(chunk.event)
            self.buffer.add(
                self.users.index(chunk.user),
                self.items.index(chunk.item),
                chunk.timestamp,
                chunk.weight,
                event,
            )
            n += len(chunk)
        return n

    def finish_events(self) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """(codes, event types) of everything read, or None when no file had an event column."""
        codes = self.buffer.events()
        return None if codes is None else event_codes(codes, self.events.ids())

    def append(self, paths: Sequence[Path]) -> None:
        """Read each appended log in order, logging what each one added."""
        for path in paths:
            before_users, before_items = len(self.users), len(self.items)
            n = self.read(Path(path))
            logger.info(
                "appended %s: %d interactions, %d new users, %d new items",
                path, n, len(self.users) - before_users, len(self.items) - before_items,
            )  # fmt: skip


def stream_interactions(
    name: str,
    path: Path,
    columns: ColumnMap,
    *,
    items: RawItems | None = None,
    extra_paths: Sequence[Path] = (),
    chunk_rows: int = 250_000,
    event_weights: Mapping[str, float] | None = None,
) -> Interactions:
    """Read a log file (then each extra log) in chunks into `Interactions`, in one pass over each file.

    Same result as `build_interactions(name, read_log(path), items)` followed by `append_log` of every
    extra log: log items by first appearance, then metadata-only items in file order, then items new
    in the extra logs (those have NO_CATEGORY and a NaN price).
    """
    reader = _Reader(columns, chunk_rows, event_weights)
    reader.read(Path(path))
    meta_rows = reader.items.index(items.item) if items is not None else np.zeros(0, dtype=np.int64)
    reader.append(extra_paths)
    events = reader.finish_events()
    user, item, timestamp, weight = reader.buffer.finish()
    return Interactions(
        name=name,
        user=user,
        item=item,
        timestamp=timestamp,
        weight=weight,
        user_ids=reader.users.ids(),
        catalog=make_catalog(reader.items.ids(), items, meta_rows),
        event=None if events is None else events[0],
        event_types=() if events is None else events[1],
    )


def append_files(
    base: Interactions,
    paths: Sequence[Path],
    columns: ColumnMap,
    *,
    chunk_rows: int = 250_000,
    event_weights: Mapping[str, float] | None = None,
) -> Interactions:
    """Append log files after `base` (same result as `append_log` of each), streaming each file."""
    reader = _Reader(columns, chunk_rows, event_weights, IdMap(base.user_ids), IdMap(base.catalog.item_ids))
    reader.events = IdMap(base.event_types)
    reader.append(paths)
    events = reader.finish_events()
    user, item, timestamp, weight = reader.buffer.finish()
    return extend_interactions(
        base, user, item, timestamp, weight, reader.users.ids(), reader.items.ids(), events
    )
