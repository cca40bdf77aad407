"""MovieLens-100k in RecBole's atomic format: fetch once into the cache, then load offline.

The copy we use ships inside the `recbole==1.2.1` wheel (`recbole/dataset_example/ml-100k/`), so
`pip download` from the ordinary package registry is the only network access, and only on fetch.
Loading never touches the network: without a cached copy it tells the user how to fetch one.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.files import open_atomic, sha256_file
from training.data.indexing import build_interactions
from training.data.types import DataError, Interactions, RawItems, RawLog

logger = logging.getLogger(__name__)

RECBOLE_REQUIREMENT = "recbole==1.2.1"
WHEEL_FOLDER = "recbole/dataset_example/ml-100k/"
DATASET = "ml-100k"
# sha256 of the two files as shipped in recbole 1.2.1: a changed or truncated copy is refused.
EXPECTED_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
FETCH_HINT = "run `recdistill data fetch ml-100k` first (needs access to the Python package registry)"

# RecBole atomic field types: https://recbole.io/docs/user_guide/data/atomic_files.html
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class AtomicFile:
    """A parsed atomic file: columns by field name, each parsed by its declared type.

    token -> str [n]; float -> float64 [n]; token_seq -> list of lists of str;
    float_seq -> list of float64 arrays. Rows keep file order.
    """

    file: str
    types: dict[str, str]
    columns: dict[str, Any]

    def __len__(self) -> int:
        first = next(iter(self.columns.values()))
        return len(first)


def _parse_header(file: str, line: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for field in line.rstrip("\r\n").split("\t"):
        name, sep, kind = field.rpartition(":")
        if not sep or not name:
            raise DataError(f"header field {field!r} is not 'name:type'", file=file, row=1)
        if kind not in ATOMIC_TYPES:
            raise DataError(
                f"unknown type {kind!r}; expected one of {ATOMIC_TYPES}", file=file, row=1, column=name
            )
        if name in types:
            raise DataError(f"duplicate column name {name!r} in the header", file=file, row=1)
        types[name] = kind
    return types


def _to_float(file: str, column: str, rows: list[int], values: list[str]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        for row, value in zip(rows, values, strict=True):
            try:
                float(value)
            except ValueError:
                raise DataError(f"not a number: {value!r}", file=file, row=row, column=column) from None
        raise


def read_atomic(path: Path) -> AtomicFile:
    """Parse a RecBole atomic file (tab-separated, typed header); header is row 1."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError("no such file", file=file) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=file) from exc
    lines = text.split("\n")
    if not lines[0].strip():
        raise DataError("the file is empty (no header)", file=file)
    types = _parse_header(file, lines[0])
    names = list(types)
    raw: dict[str, list[str]] = {name: [] for name in names}
    rows: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(
                f"expected {len(names)} tab-separated fields, found {len(fields)}", file=file, row=number
            )
        rows.append(number)
        for name, value in zip(names, fields, strict=True):
            raw[name].append(value)
    if not rows:
        raise DataError("no data rows (only a header)", file=file)
    columns: dict[str, Any] = {}
    for name, kind in types.items():
        values = raw[name]
        if kind == "token":
            columns[name] = np.array(values, dtype=str)
        elif kind == "float":
            columns[name] = _to_float(file, name, rows, values)
        elif kind == "token_seq":
            columns[name] = [value.split() for value in values]
        else:  # float_seq
            columns[name] = [
                _to_float(file, name, [row] * len(v.split()), v.split())
                for row, v in zip(rows, values, strict=True)
            ]
    return AtomicFile(file=file, types=types, columns=columns)


def _require(atomic: AtomicFile, name: str, kind: str) -> Any:
    if name not in atomic.types:
        raise DataError(
            f"missing column {name!r}; columns found: {list(atomic.types)}", file=atomic.file, column=name
        )
    if atomic.types[name] != kind:
        raise DataError(
            f"column type is {atomic.types[name]!r}, expected {kind!r}", file=atomic.file, column=name
        )
    return atomic.columns[name]


def _cached(folder: Path) -> bool:
    return all(
        (folder / name).is_file() and sha256_file(folder / name) == digest
        for name, digest in EXPECTED_SHA256.items()
    )


def _copy_sha256(src: IO[bytes], dst: IO[bytes], chunk: int = 1 << 20) -> str:
    """Copy `src` into `dst`; the hex sha256 of what was copied."""
    digest = hashlib.sha256()
    while block := src.read(chunk):
        digest.update(block)
        dst.write(block)
    return digest.hexdigest()


def fetch_ml100k(cache_dir: Path) -> Path:
    """Download MovieLens-100k into `cache_dir/ml-100k/` (skipped when already there); returns that folder.

    Runs `python -m pip download --no-deps recbole==1.2.1`, extracts the two atomic files, checks
    their sha256 and deletes the wheel. Each file is written through core.files.open_atomic and only
    renamed into place once its sha256 matches, so an interrupted fetch never leaves a half-written
    file; the next fetch checks both files' sha256 and fetches again unless both match.
    """
    folder = Path(cache_dir) / DATASET
    if _cached(folder):
        logger.info("ml-100k already cached in %s", folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recdistill-fetch-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            RECBOLE_REQUIREMENT,
            "-d",
            tmp,
        ]
        logger.info("downloading %s with pip", RECBOLE_REQUIREMENT)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise DataError(
                f"`{' '.join(cmd[2:])}` failed (exit {result.returncode}); is the package registry reachable?\n{tail}"
            )
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise DataError(f"pip reported success but left no recbole wheel in {tmp}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                for name in EXPECTED_SHA256:  # each file checked before it replaces anything
                    member = WHEEL_FOLDER + name
                    with wheel.open(member) as src, open_atomic(folder / name, "wb") as dst:
                        if _copy_sha256(src, dst) != EXPECTED_SHA256[name]:
                            raise DataError(f"{member} in {wheels[0].name} does not have the expected sha256")
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{wheels[0].name} does not contain {WHEEL_FOLDER}: {exc}") from exc
    logger.info("ml-100k cached in %s (wheel deleted)", folder)
    return folder


def parse_ml100k(inter_path: Path, item_path: Path, name: str = DATASET) -> Interactions:
    """Interactions from the two atomic files; every rating is one implicit interaction of weight 1.

    File order of the .inter file is kept (it decides timestamp ties). Each item's category is the
    first genre of `class:token_seq`; prices are unknown (NaN).
    """
    inter = read_atomic(inter_path)
    user = _require(inter, "user_id", "token")
    item = _require(inter, "item_id", "token")
    timestamp = _require(inter, "timestamp", "float")
    log = RawLog(
        source=inter.file,
        user=user,
        item=item,
        timestamp=np.floor(timestamp).astype(np.int64),
        weight=np.ones(len(user), dtype=np.float32),
    )
    meta = read_atomic(item_path)
    item_ids = _require(meta, "item_id", "token")
    genres = _require(meta, "class", "token_seq")
    if len(set(item_ids.tolist())) != len(item_ids):
        raise DataError("duplicate item_id", file=meta.file, column="item_id")
    items = RawItems(
        source=meta.file,
        item=item_ids,
        category=np.array([g[0] if g else "" for g in genres], dtype=str),
        price=np.full(len(item_ids), np.nan, dtype=np.float32),
    )
    return build_interactions(name, log, items)


def load_ml100k(cache_dir: Path) -> Interactions:
    """MovieLens-100k from the cache filled by `fetch_ml100k`; DataError with the fix when absent."""
    folder = Path(cache_dir) / DATASET
    inter, item = folder / "ml-100k.inter", folder / "ml-100k.item"
    for path in (inter, item):
        if not path.is_file():
            raise DataError(f"MovieLens-100k is not cached; {FETCH_HINT}", file=str(path))
    return parse_ml100k(inter, item)
