"""An imported teacher's files: the spec that describes them, the matrices and id maps, and the checks
that run on them before anything trains (numpy only; training/teacher/imported.py builds the teacher).

A spec is a small TOML or JSON file; relative paths are relative to it:

    score = "dot"                      # the only head recdistill distils (see SCORE_WHY)
    [items]                            # one row per item
    vectors = "items.parquet"          # .npy float [n, D] (ids from `ids`), or Parquet with id_column
    id_column = "item_id"              # Parquet: the raw item id column
    vector_column = "vector"           # Parquet: a list column (default: every other column, in order)
    ids = "item_ids.npy"               # .npy: the raw ids in row order (.npy of str, or .txt one a line)
    [users]                            # tables: the user vectors; onnx: the id map of the user input
    [query]                            # onnx only
    graph = "query.onnx"
    history_input = "history"          # omit for a graph without a history
    user_input = "user"                # omit for a graph without a user index
    output = "user_vector"
    history_len = 50
    padding_value = 1000               # the graph's history pad index (default: the number of items)
    oov_user = 500                     # the graph's unknown-user index (default: the number of users)
    known_users = "known.npy"          # optional: bool per [users] id, for a lookup (a user-id-only graph)

A version recdistill published (`models/<version>` or its manifest.json) is read as an onnx spec.
Every failure is a TeacherImportError naming the file and what is wrong (the CLI: one line, exit 2).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.files import sha256_file

SCORE_WHY = (
    "recdistill distils and serves dot-product teachers only (score = query · item): the soft labels, "
    "the student, the exported top-k graph and the service all rank by that product, so a teacher "
    "with another head would be distilled and shadowed as something it is not; for cosine, "
    "L2-normalise both sides and import them as dot"
)


class TeacherImportError(UserError, ValueError):
    """A teacher that cannot be distilled as given; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Matrix:
    """Vectors with the raw id of each row."""

    ids: np.ndarray  # str [n]
    vectors: np.ndarray  # float32 [n, D]
    path: Path


@dataclass
class Spec:
    """A parsed spec: where each file is and what the query graph looks like."""

    path: Path
    items: dict[str, Any]
    users: dict[str, Any] | None
    query: dict[str, Any] | None
    files: list[Path] = field(default_factory=list)  # every file read, for the source's sha256

    def file(self, section: dict[str, Any], key: str) -> Path:
        if key not in section:
            raise TeacherImportError(f"{self.path}: '{key}' missing in a section that needs it")
        path = (self.path.parent / str(section[key])).resolve()
        if not path.is_file():
            raise TeacherImportError(f"{path}: no such file (named by {self.path})")
        self.files.append(path)
        return path


def _read_tree(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TeacherImportError(f"{path}: no such file")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise TeacherImportError(f"{path}: not a readable {path.suffix[1:] or 'TOML'} spec: {exc}") from exc


def _from_manifest(tree: dict[str, Any]) -> dict[str, Any]:
    """A published recdistill version as an onnx spec: its teacher's user graph, item matrix, id maps."""
    card = tree["teacher"]
    query = {
        "graph": card["user"]["file"],
        "history_input": "history",
        "output": "user_vector",
        "history_len": card["history_len"],
        "padding_value": card["padding_value"],
    }
    if card.get("oov_user") is not None:
        query |= {"user_input": "user", "oov_user": card["oov_user"]}
    if card.get("known_users"):  # published from tables: a lookup that knows these users only
        query["known_users"] = card["known_users"]
    return {
        "score": "dot",
        "items": {"vectors": card["item_vectors"], "ids": tree.get("item_ids", "items.npy")},
        "users": {"ids": tree.get("user_ids", "users.npy")},
        "query": query,
    }


def read_spec(raw: str, kind: str) -> Spec:
    """The spec at `raw` (a TOML/JSON file, or a published version folder / its manifest.json)."""
    path = Path(raw).expanduser()
    if kind == "onnx" and path.is_dir():
        path = path / "manifest.json"
    path = path.resolve()
    tree = _read_tree(path)
    if kind == "onnx" and "schema_version" in tree and "teacher" in tree:
        tree = _from_manifest(tree)
    score = tree.get("score", "dot")
    if score != "dot":
        raise TeacherImportError(f"{path}: score {score!r}: {SCORE_WHY}")
    sections = {name: tree.get(name) for name in ("items", "users", "query")}
    for name, value in sections.items():
        if value is not None and not isinstance(value, dict):
            raise TeacherImportError(f"{path}: [{name}] must be a table")
    if sections["items"] is None:
        raise TeacherImportError(f"{path}: no [items] section (the item vectors)")
    if kind == "tables" and sections["users"] is None:
        raise TeacherImportError(f"{path}: a tables teacher needs a [users] section (the user vectors)")
    if kind == "onnx" and sections["query"] is None:
        raise TeacherImportError(f"{path}: an onnx teacher needs a [query] section (the query graph)")
    spec = Spec(path, sections["items"], sections["users"], sections["query"])
    spec.files.append(path)
    return spec


def read_ids(path: Path) -> np.ndarray:
    """str [n] from a .npy of ids or a text file with one id a line."""
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False)).astype(str).ravel()
        return np.array([line for line in path.read_text().splitlines() if line.strip()], dtype=str)
    except (OSError, ValueError) as exc:
        raise TeacherImportError(f"{path}: cannot read the ids: {exc}") from exc


def _parquet_matrix(path: Path, section: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own exception types
        raise TeacherImportError(f"{path}: cannot read as Parquet: {exc}") from exc
    id_col = section.get("id_column", "id")
    if id_col not in frame.columns:
        raise TeacherImportError(f"{path}: no id column {id_col!r} (columns {list(frame.columns)[:8]})")
    ids = frame[id_col].astype(str).to_numpy()
    vec_col = section.get("vector_column")
    try:
        if vec_col is not None:
            if vec_col not in frame.columns:
                raise TeacherImportError(f"{path}: no vector column {vec_col!r}")
            vectors = np.stack([np.asarray(v, dtype=np.float64) for v in frame[vec_col]])
        else:
            vectors = frame.drop(columns=[id_col]).to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise TeacherImportError(f"{path}: the vectors are not one numeric row per id: {exc}") from exc
    return ids, vectors


def read_matrix(spec: Spec, section: dict[str, Any], what: str) -> Matrix:
    """The vectors of a section with their ids; checked: 2-D, numeric, finite, one unique id per row."""
    path = spec.file(section, "vectors")
    if path.suffix == ".parquet":
        ids, vectors = _parquet_matrix(path, section)
    else:
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TeacherImportError(f"{path}: cannot read as .npy: {exc}") from exc
        ids = read_ids(spec.file(section, "ids"))
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise TeacherImportError(
            f"{path}: {what} vectors of shape {vectors.shape}, dtype {vectors.dtype}; expected a float [rows, dim] matrix"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise TeacherImportError(
            f"{path}: {len(bad)} {what} rows hold NaN or Inf (first row {bad[0]}, id {ids[bad[0]] if bad[0] < len(ids) else '?'})"
        )
    if len(ids) != len(vectors):
        raise TeacherImportError(f"{path}: {len(vectors)} {what} rows but {len(ids)} ids")
    if len(np.unique(ids)) != len(ids):
        raise TeacherImportError(f"{path}: {what} ids are not unique")
    return Matrix(ids=ids, vectors=vectors.astype(np.float32), path=path)


def row_map(teacher_ids: np.ndarray, data_ids: np.ndarray) -> np.ndarray:
    """int64 [len(data_ids)]: each data id's row in the teacher (-1: the teacher has none)."""
    return (
        pd.Index(np.asarray(teacher_ids, dtype=str))
        .get_indexer(np.asarray(data_ids, dtype=str))
        .astype(np.int64)
    )


def item_lookup(rows: np.ndarray, pad: int) -> np.ndarray:
    """int64 [n_items + 1]: data item index -> teacher row; the data pad and unmapped items -> `pad`."""
    return np.append(np.where(rows >= 0, rows, pad), pad).astype(np.int64)


def user_lookup(rows: np.ndarray, oov: int) -> np.ndarray:
    """int64 [n_users + 1]: data user index -> teacher row; OOV and unmapped users -> `oov`."""
    return np.append(np.where(rows >= 0, rows, oov), oov).astype(np.int64)


def data_order(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32 [n_items, D]: the teacher's item rows in data order; an unmapped item is a zero row."""
    out = np.zeros((len(rows), vectors.shape[1]), np.float32)
    out[rows >= 0] = vectors[rows[rows >= 0]]
    return out


def check_mapped(
    rows: np.ndarray, log_index: np.ndarray, data_ids: np.ndarray, what: str, where: Path, threshold: float
) -> dict[str, Any]:
    """Share of the interactions whose user/item (`log_index`) has no teacher row; over `threshold`: raise."""
    unmapped = rows[log_index] < 0 if len(log_index) else np.zeros(0, bool)
    share = float(unmapped.mean()) if len(unmapped) else 0.0
    missing = np.flatnonzero(rows < 0)
    report = {"ids": len(rows), "unmapped_ids": len(missing), "unmapped_interaction_share": share}
    if share > threshold:
        example = ", ".join(map(str, data_ids[missing[:3]]))
        raise TeacherImportError(
            f"{where}: {share:.2%} of the interactions ({int(unmapped.sum())} of {len(unmapped)}) name "
            f"{what}s with no row here ({len(missing)} {what} ids, e.g. {example}); "
            f"teacher.max_unmapped_share is {threshold:g}"
        )
    return report


TABLES_SPEC = """score = "dot"
[items]
vectors = "items.npy"
ids = "item_ids.npy"
[users]
vectors = "users.parquet"
id_column = "user_id"
vector_column = "vector"
"""


def write_tables(
    folder: Path, user_ids: np.ndarray, users: np.ndarray, item_ids: np.ndarray, items: np.ndarray,
    spec_name: str = "tables.toml",
) -> Path:  # fmt: skip
    """Embedding tables in the form `tables:` reads (users.parquet, items.npy, item_ids.npy) and
    their spec `spec_name`; returns the spec. For a factor model fitted in Python (e.g. implicit)."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = list(np.asarray(users, dtype=np.float32))
    pd.DataFrame({"user_id": np.asarray(user_ids).astype(str), "vector": vectors}).to_parquet(
        folder / "users.parquet"
    )
    np.save(folder / "items.npy", np.asarray(items, dtype=np.float32), allow_pickle=False)
    np.save(folder / "item_ids.npy", np.asarray(item_ids).astype(str), allow_pickle=False)
    spec = folder / spec_name
    spec.write_text(TABLES_SPEC)
    return spec


def files_sha256(files: list[Path]) -> tuple[str, dict[str, str]]:
    """(one digest over every file's name and sha256, in order; each file's own sha256)."""
    each = {str(p): sha256_file(p) for p in dict.fromkeys(files)}
    digest = hashlib.sha256("".join(f"{Path(p).name}:{h}\n" for p, h in each.items()).encode())
    return digest.hexdigest(), each
