"""The manifest: the one description of a published model version.

The offline job writes it last, beside the artifacts; the service reads nothing it does not name.
Every file carries its sha256 so a half-written or tampered version is refused at load time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import UserError

# The file mechanisms live in core.files; they are re-exported here for the callers that name them
# beside the manifest's own functions (publishing writes both).
from core.files import fsync_dir as fsync_dir
from core.files import open_atomic as open_atomic
from core.files import sha256_file as sha256_file
from core.files import write_bytes_atomic as write_bytes_atomic
from core.files import write_json_atomic as write_json_atomic

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"

# ONNX interface names, fixed here so exporter and service cannot drift apart.
HISTORY_INPUT = "history"  # int64 [batch, history_len], left-padded, most recent last
USER_INPUT = "user"  # int64 [batch], teacher only; unknown users map to n_users (OOV row)
K_INPUT = "k"  # int64 [1]
SCORES_OUTPUT = "scores"  # float32 [batch, k], descending
INDICES_OUTPUT = "indices"  # int64 [batch, k]
USER_VECTOR_OUTPUT = "user_vector"  # float32 [batch, dim]


class ManifestError(UserError, ValueError):
    """A version on disk that must not be served: missing, unreadable, or not matching its manifest."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Literal["int64", "float32"]
    shape: list[int | str]  # symbolic dims as names ("batch", "history_len", "k")


class OnnxGraph(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


class ModelCard(BaseModel):
    """One side (student or teacher) as the service needs it."""

    model_config = ConfigDict(extra="forbid")
    topk: OnnxGraph  # inputs -> (scores, indices); TopK inside the graph
    user: OnnxGraph  # inputs -> user_vector
    item_vectors: str  # .npy float32 [n_items, dim]
    dim: int
    history_len: int
    padding_value: int  # == n_items: the pad row of the history embedding
    parameters: int
    oov_user: int | None = None  # teacher only: the index unknown users map to
    # The item matrix inside the topk graph (training.export.graphs); item_vectors .npy is float32 always.
    item_precision: Literal["float32", "float16", "int8"] = "float32"
    # A lookup teacher (embedding tables: the query is the user's row): .npy bool [n_users], the users
    # it has a vector for. Any other user is unknown to it, and the service says so instead of
    # answering with the OOV row. None: the query is computed from the history, for anyone.
    known_users: str | None = None


class DatasetInfo(BaseModel):
    name: str
    fingerprint: str
    n_users: int
    n_items: int
    n_interactions: int


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class Retrieval(BaseModel):
    """How the student's top-k is computed when served: the exact graph, or an ANN index at catalogue scale."""

    # hnsw/ivf: a faiss index (app/engine/ann.py, training/export/ann.py)
    kind: Literal["exact", "hnsw", "ivf"] = "exact"
    index_file: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class TeacherSource(BaseModel):
    """Which teacher a version was distilled from: ours (`train`) or an imported one, with its files."""

    source: str  # teacher.source as configured: "train", "onnx:<spec>", "python:<factory>", "tables:<spec>"
    kind: Literal["train", "onnx", "python", "tables"]
    sha256: str  # of the teacher checkpoint, or of the imported files (name and content, in order)
    files: dict[str, str] = Field(default_factory=dict)  # imported file -> its own sha256
    report: dict[str, Any] = Field(default_factory=dict)  # the import's checks: shapes, unmapped shares


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    version: str
    created_at: datetime
    dataset: DatasetInfo
    config: dict[str, Any]
    files: dict[str, FileEntry]
    student: ModelCard
    teacher: ModelCard
    # Files that map indices to raw ids and metadata, all numpy .npy/.npz (allow_pickle=False) or JSON.
    item_ids: str = "items.npy"
    user_ids: str = "users.npy"
    item_category: str = "item_category.npy"
    categories: str = "categories.json"
    item_price: str = "item_price.npy"
    popularity: str = "popularity.npy"
    # Extra catalogue columns the version was trained with (title, url, ...; `data.item_columns.extra`),
    # returned in answers on request (`fields`): one .npz of str arrays [n_items] named by
    # `item_extra_columns` ("" = unknown). None: the version has no extra columns.
    item_extra: str | None = None
    item_extra_columns: list[str] = Field(default_factory=list)
    # The interactions the service seeds its history store with: arrays user, item, timestamp (int64,
    # by user then time) and, when the log has event types, event (int16 code, -1 none) + event_types.
    seed_interactions: str | None = "seed_interactions.npz"
    # What the seed holds: "log" = every interaction of the log the version was trained from (train,
    # validation and test rows); "train" = the train split only, as versions published before said
    # nothing (each user's last two interactions are then missing from the service's history).
    seed_scope: Literal["train", "log"] = "train"
    # Each evaluated user's test item and the test query the report ranked it from, for honest
    # replays (core/holdout.py lists the arrays; older versions: user and item only).
    holdout: str | None = "holdout.npz"
    retrieval: Retrieval = Field(default_factory=Retrieval)
    parity: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    report: list[str] = Field(default_factory=list)
    teacher_source: TeacherSource | None = None  # None: a version published before sources existed


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def referenced_files(manifest: Manifest) -> set[str]:
    """Every file the manifest points at; each must also be listed (with sha256) in `files`."""
    names = {
        manifest.item_ids,
        manifest.user_ids,
        manifest.item_category,
        manifest.categories,
        manifest.item_price,
        manifest.popularity,
    }
    names |= {name for name in (manifest.seed_interactions, manifest.holdout, manifest.item_extra) if name}
    for card in (manifest.student, manifest.teacher):
        names |= {card.topk.file, card.user.file, card.item_vectors}
        if card.known_users:
            names.add(card.known_users)
    if manifest.retrieval.index_file:
        names.add(manifest.retrieval.index_file)
    return names


def load_manifest(version_dir: Path) -> Manifest:
    path = Path(version_dir) / MANIFEST_FILE
    try:
        raw = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from exc
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValueError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema_version {manifest.schema_version}, expected {SCHEMA_VERSION}")
    missing = referenced_files(manifest) - set(manifest.files)
    if missing:
        raise ManifestError(f"{path}: files referenced but not listed with a sha256: {sorted(missing)}")
    return manifest


def verify_files(version_dir: Path, manifest: Manifest) -> None:
    """Raise ManifestError unless every listed file exists with the recorded size and sha256."""
    for name, entry in manifest.files.items():
        path = Path(version_dir) / name
        if not path.is_file():
            raise ManifestError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != entry.bytes:
            raise ManifestError(f"{path}: {path.stat().st_size} bytes, manifest says {entry.bytes}")
        if sha256_file(path) != entry.sha256:
            raise ManifestError(f"{path}: sha256 does not match the manifest")


def read_latest(models_dir: Path) -> str | None:
    """The version named by models/LATEST, or None when nothing has been published."""
    path = Path(models_dir) / LATEST_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def write_latest(models_dir: Path, version: str) -> None:
    write_bytes_atomic(Path(models_dir) / LATEST_FILE, (version + "\n").encode())
