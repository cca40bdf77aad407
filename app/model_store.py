"""Load, verify and hot-swap a published model version.

A version is served only after every check passes: the manifest parses, every listed file has its
sha256, the ONNX graphs load with the names the contract fixes, the arrays agree on n_items, and a
probe request answers sane top-k lists. Then one reference assignment swaps the new immutable
`LoadedModel` in; requests already holding the old one finish on it. Anything that fails is logged
and refused, and the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from app.ann import AnnIndex, load_ann
from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    MANIFEST_FILE,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
    Manifest,
    ManifestError,
    ModelCard,
    load_manifest,
    read_latest,
    verify_files,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Side:
    """One model side (student or teacher) ready to run: sessions plus what scoring needs."""

    name: str
    topk: ort.InferenceSession
    user: ort.InferenceSession
    item_vectors: np.ndarray  # float32 [n_items, dim], read-only
    history_len: int
    padding_value: int
    oov_user: int | None  # teacher only

    @property
    def needs_user(self) -> bool:
        return self.oov_user is not None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """An immutable, verified model version. Never mutated after construction: swap, do not edit."""

    version: str
    path: Path
    manifest: Manifest
    student: Side
    teacher: Side
    item_ids: np.ndarray  # str [n_items]
    item_index: dict[str, int]
    user_index: dict[str, int]
    category: np.ndarray  # int32 [n_items]
    categories: list[str]
    category_index: dict[str, int]
    items_by_category: dict[int, np.ndarray]  # category -> sorted int64 item indices
    price: np.ndarray  # float32 [n_items]
    popularity: np.ndarray  # float64 [n_items]
    popular_order: np.ndarray  # int64 [n_items]: most popular first, ties by index
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ann: AnnIndex | None = None  # the student's ANN index when the manifest's retrieval is hnsw/ivf

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def side(self, name: str) -> Side:
        if name == "student":
            return self.student
        if name == "teacher":
            return self.teacher
        raise ValueError(f"unknown model side {name!r}")

    def summary(self) -> dict[str, Any]:
        """What GET /v1/models shows: the manifest minus the file list, plus load facts."""
        m = self.manifest
        return {
            "version": self.version,
            "created_at": m.created_at.isoformat(),
            "loaded_at": self.loaded_at.isoformat(),
            "dataset": m.dataset.model_dump(mode="json"),
            "n_items": self.n_items,
            "n_users": len(self.user_index),
            "categories": self.categories,
            "student": _card_summary(m.student),
            "teacher": _card_summary(m.teacher),
            "retrieval": m.retrieval.model_dump(mode="json"),
            "retrieval_served": "exact" if self.ann is None else self.ann.kind,  # RECDISTILL_RETRIEVAL
            "metrics": m.metrics,
            "parity": m.parity,
        }


def _card_summary(card: ModelCard) -> dict[str, Any]:
    return {"dim": card.dim, "history_len": card.history_len, "parameters": card.parameters}


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Explicit threads and no spinning, so student and shadow teacher do not fight over cores."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def _session(
    path: Path, opts: ort.SessionOptions, inputs: set[str], outputs: set[str]
) -> ort.InferenceSession:
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ManifestError(f"{path}: onnxruntime cannot load it: {exc}") from exc
    got_in = {i.name for i in sess.get_inputs()}
    got_out = {o.name for o in sess.get_outputs()}
    if got_in != inputs or not outputs <= got_out:
        raise ManifestError(
            f"{path}: inputs {sorted(got_in)} / outputs {sorted(got_out)}, expected {sorted(inputs)} / {sorted(outputs)}"
        )
    return sess


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read as .npy: {exc}") from exc


def _load_side(version_dir: Path, name: str, card: ModelCard, n_items: int, opts: ort.SessionOptions) -> Side:
    base = {HISTORY_INPUT} | ({USER_INPUT} if card.oov_user is not None else set())
    topk = _session(version_dir / card.topk.file, opts, base | {K_INPUT}, {SCORES_OUTPUT, INDICES_OUTPUT})
    user = _session(version_dir / card.user.file, opts, base, {USER_VECTOR_OUTPUT})
    vectors = np.ascontiguousarray(_npy(version_dir / card.item_vectors), dtype=np.float32)
    if vectors.shape != (n_items, card.dim):
        raise ManifestError(
            f"{version_dir / card.item_vectors}: shape {vectors.shape}, expected ({n_items}, {card.dim})"
        )
    if card.padding_value != n_items:
        raise ManifestError(
            f"{version_dir / MANIFEST_FILE}: {name}.padding_value {card.padding_value} != n_items {n_items}"
        )
    vectors.setflags(write=False)
    return Side(name, topk, user, vectors, card.history_len, card.padding_value, card.oov_user)


def probe(model: LoadedModel) -> None:
    """Run each side on two one-item histories; refuse outputs with wrong shape, range or order."""
    n = model.n_items
    k = min(10, n)
    for side in (model.student, model.teacher):
        hist = np.full((2, side.history_len), side.padding_value, np.int64)
        hist[0, -1], hist[1, -1] = 0, n - 1
        feeds: dict[str, np.ndarray] = {HISTORY_INPUT: hist}
        if side.needs_user:
            feeds[USER_INPUT] = np.array([side.oov_user, 0], np.int64)
        try:
            scores, indices = side.topk.run(
                [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
            )
            (uvec,) = side.user.run([USER_VECTOR_OUTPUT], feeds)
        except Exception as exc:
            raise ManifestError(f"{model.path}: probe request failed on the {side.name}: {exc}") from exc
        where = f"{model.path}: probe of the {side.name}"
        if scores.shape != (2, k) or indices.shape != (2, k):
            raise ManifestError(f"{where}: top-k shapes {scores.shape}/{indices.shape}, expected (2, {k})")
        if not np.isfinite(scores).all() or indices.min() < 0 or indices.max() >= n:
            raise ManifestError(f"{where}: non-finite scores or indices outside [0, {n})")
        if (np.diff(scores, axis=1) > 1e-6).any():
            raise ManifestError(f"{where}: scores are not in descending order")
        if uvec.shape != (2, side.item_vectors.shape[1]) or not np.isfinite(uvec).all():
            raise ManifestError(f"{where}: user_vector shape {uvec.shape} or non-finite values")


def load_version(
    version_dir: Path,
    intra_op_threads: int = 1,
    verify_hashes: bool = True,
    retrieval: Literal["manifest", "exact"] = "manifest",
) -> LoadedModel:
    """Verify and load one version folder. Raises ManifestError naming the file when anything is off.

    `verify_hashes=False` skips only the sha256 pass over the files (every other check still runs):
    for the shadow's teacher process, which loads a folder the server has just verified.
    `retrieval="exact"` leaves the student's ANN index unloaded (its file is still hash-checked), so
    the student answers from the exact top-k graph (Settings.retrieval).
    """
    version_dir = Path(version_dir)
    manifest = load_manifest(version_dir)
    if verify_hashes:
        verify_files(version_dir, manifest)
    item_ids = _npy(version_dir / manifest.item_ids).astype(str)
    user_ids = _npy(version_dir / manifest.user_ids).astype(str)
    n = len(item_ids)
    if n != manifest.dataset.n_items:
        raise ManifestError(
            f"{version_dir / manifest.item_ids}: {n} ids, manifest says n_items {manifest.dataset.n_items}"
        )
    category = _npy(version_dir / manifest.item_category).astype(np.int32)
    price = _npy(version_dir / manifest.item_price).astype(np.float32)
    popularity = _npy(version_dir / manifest.popularity).astype(np.float64)
    for fname, arr in (
        (manifest.item_category, category),
        (manifest.item_price, price),
        (manifest.popularity, popularity),
    ):
        if arr.shape != (n,):
            raise ManifestError(f"{version_dir / fname}: shape {arr.shape}, expected ({n},)")
    try:
        categories = json.loads((version_dir / manifest.categories).read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{version_dir / manifest.categories}: not readable JSON: {exc}") from exc
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ManifestError(f"{version_dir / manifest.categories}: expected a JSON list of names")
    if n and (category.max(initial=-1) >= len(categories) or category.min(initial=0) < -1):
        raise ManifestError(
            f"{version_dir / manifest.item_category}: category codes outside [-1, {len(categories)})"
        )
    opts = session_options(intra_op_threads)
    student = _load_side(version_dir, "student", manifest.student, n, opts)
    # A teacher without oov_user reads the history alone (a history-only teacher), like the student.
    teacher = _load_side(version_dir, "teacher", manifest.teacher, n, opts)
    for arr in (category, price, popularity, item_ids):
        arr.setflags(write=False)
    model = LoadedModel(
        version=manifest.version,
        path=version_dir,
        manifest=manifest,
        student=student,
        teacher=teacher,
        item_ids=item_ids,
        item_index={item: i for i, item in enumerate(item_ids.tolist())},
        user_index={user: u for u, user in enumerate(user_ids.tolist())},
        category=category,
        categories=list(categories),
        category_index={name: c for c, name in enumerate(categories)},
        items_by_category={c: np.flatnonzero(category == c).astype(np.int64) for c in range(len(categories))},
        price=price,
        popularity=popularity,
        popular_order=np.argsort(-popularity, kind="stable").astype(np.int64),
        ann=None  # exact: the top-k graph answers
        if retrieval == "exact"
        else load_ann(version_dir, manifest, student.item_vectors, intra_op_threads),
    )
    probe(model)
    return model


class ReloadRefused(RuntimeError):
    """A version that was asked for but failed verification; the old one keeps serving."""


# A version is one folder name under models_dir (same pattern as ReloadRequest.version).
_VERSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def latest_version(models_dir: Path) -> str | None:
    """The version models/LATEST names; None when nothing is published. Raises ReloadRefused, naming
    the file, when LATEST cannot be read or does not hold one plain version name (a path, a binary
    blob, several lines): start-up then falls back to the newest good version instead of crashing."""
    path = Path(models_dir) / "LATEST"
    try:
        name = read_latest(models_dir)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReloadRefused(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if name is not None and not _VERSION_NAME.fullmatch(name):
        raise ReloadRefused(f"{path}: {name[:80]!r} is not a version folder name")
    return name


# Called with the verified model before the swap (e.g. seeding the history store).
BeforeSwap = Callable[[LoadedModel], None]


class ModelStore:
    """Holds the current `LoadedModel` and swaps in verified new ones, one reload at a time."""

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        before_swap: BeforeSwap | None = None,
        retrieval: Literal["manifest", "exact"] = "manifest",
    ):
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.retrieval = retrieval
        self._before_swap = before_swap
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self.last_error: str | None = None
        self.listeners: list[Callable[[LoadedModel], None]] = []  # called after each swap
        self.refusal_listeners: list[Callable[[str, str], None]] = []  # (version, reason) on refusal

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _swap(self, model: LoadedModel) -> None:
        if self._before_swap is not None:
            self._before_swap(model)
        self._current = model  # the one atomic reference swap
        self.last_error = None
        for listener in self.listeners:
            listener(model)
        log.info("serving model version %s from %s", model.version, model.path)

    def load(self, version: str) -> LoadedModel:
        """Verify and swap in `version`; raise ReloadRefused (old one keeps serving) when it fails."""
        with self._lock:
            path = self.models_dir / version
            try:
                model = load_version(path, self.intra_op_threads, retrieval=self.retrieval)
            except ManifestError as exc:
                self.last_error = str(exc)
                log.error("refused model version %s: %s", version, exc)
                for listener in self.refusal_listeners:
                    listener(version, str(exc))
                raise ReloadRefused(str(exc)) from exc
            self._swap(model)
            return model

    def reload_latest(self) -> tuple[LoadedModel, bool]:
        """Load the version LATEST names unless already served. Returns (model, changed)."""
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:
            self.last_error = str(exc)
            raise
        if latest is None:
            raise ReloadRefused(f"{self.models_dir / 'LATEST'}: nothing published")
        current = self._current
        if current is not None and current.path == self.models_dir / latest:
            return current, False
        return self.load(latest), True

    def load_initial(self) -> LoadedModel | None:
        """At start-up: LATEST if it verifies, else the newest other version that does (by created_at)."""
        candidates: list[str] = []
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:  # a garbage LATEST: refuse it clearly, try the other versions
            self.last_error = str(exc)
            log.error("ignoring %s; trying the newest other version", exc)
            latest = None
        if latest:
            candidates.append(latest)
        others = []
        try:
            children = sorted(self.models_dir.iterdir()) if self.models_dir.is_dir() else []
        except OSError as exc:
            log.error("cannot list %s: %s", self.models_dir, exc)
            children = []
        if children:
            for child in children:
                if child.name != latest and (child / MANIFEST_FILE).is_file():
                    try:
                        others.append((load_manifest(child).created_at, child.name))
                    except ManifestError as exc:
                        log.warning("skipping %s: %s", child, exc)
        candidates += [name for _, name in sorted(others, reverse=True)]
        for name in candidates:
            try:
                return self.load(name)
            except ReloadRefused:
                continue
        if not candidates:
            if self.last_error is None:
                self.last_error = f"{self.models_dir}: no published model version"
            log.warning("no model version under %s: not ready until one is published", self.models_dir)
        return None


async def watch_latest(store: ModelStore, interval_s: float) -> None:
    """Poll models/LATEST and load what it names; a refused version is retried only once it changes."""
    loop = asyncio.get_running_loop()
    refused: tuple[str, float] | None = None
    while True:
        await asyncio.sleep(interval_s)
        try:
            try:
                latest = latest_version(store.models_dir)
            except ReloadRefused as exc:
                if refused != (str(exc), 0.0):
                    log.error("LATEST watcher: %s; still serving the current version", exc)
                    refused = (str(exc), 0.0)
                continue
            current = store.current
            if latest is None or (current is not None and current.path == store.models_dir / latest):
                continue
            manifest = store.models_dir / latest / MANIFEST_FILE
            stamp = (latest, manifest.stat().st_mtime if manifest.exists() else 0.0)
            if stamp == refused:
                continue
            try:
                await loop.run_in_executor(None, store.load, latest)
                refused = None
            except ReloadRefused:
                refused = stamp
        except asyncio.CancelledError:
            raise
        except Exception:  # the watcher must outlive any surprise; it is logged, not swallowed
            log.exception("LATEST watcher iteration failed")


def read_seed(model: LoadedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The version's training interactions as raw (user_ids, item_ids, timestamps), or None."""
    name = model.manifest.seed_interactions
    if not name:
        return None
    path = model.path / name
    try:
        with np.load(path, allow_pickle=False) as npz:
            users, items, ts = (
                npz["user"].astype(np.int64),
                npz["item"].astype(np.int64),
                npz["timestamp"].astype(np.int64),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read arrays user, item, timestamp: {exc}") from exc
    user_ids = np.array(list(model.user_index), dtype=str)
    if len(users) and (
        users.min() < 0 or users.max() >= len(user_ids) or items.min() < 0 or items.max() >= model.n_items
    ):
        raise ManifestError(f"{path}: user or item indices outside the id maps")
    return user_ids[users], model.item_ids[items], ts
