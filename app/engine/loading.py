"""Load and verify one published model version.

A version is served only after every check passes: the manifest parses, every listed file has its
sha256, the ONNX graphs load with the names the contract fixes, the arrays agree on n_items, and a
probe request answers sane top-k lists. Anything that fails raises ManifestError naming the file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from app.engine.ann import load_ann
from app.engine.exact import exact_top_k
from app.engine.model import LoadedModel, Side
from app.engine.score_graph import score_session
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
    verify_files,
)

log = logging.getLogger(__name__)


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


def _graph_inputs(card: ModelCard) -> set[str]:
    return {HISTORY_INPUT} | ({USER_INPUT} if card.oov_user is not None else set())


def ranking_sessions(
    version_dir: Path, card: ModelCard, vectors: np.ndarray, opts: ort.SessionOptions
) -> tuple[ort.InferenceSession | None, ort.InferenceSession | None]:
    """(topk, scores): what ranks the side's catalogue. A float32 item matrix: a MatMul session over
    `vectors`, the same node the published top-k graph holds, ranked in numpy (app/engine/exact.py);
    the top-k graph is then not loaded (its file is still hash-checked). A reduced-precision matrix
    (int8 / float16 inside the graph): the published top-k graph, whose scores only it reproduces."""
    if card.item_precision == "float32":
        return None, score_session(vectors, opts)
    graph = _session(
        version_dir / card.topk.file, opts, _graph_inputs(card) | {K_INPUT}, {SCORES_OUTPUT, INDICES_OUTPUT}
    )
    return graph, None


def _load_side(
    version_dir: Path, name: str, card: ModelCard, n_items: int, n_users: int, opts: ort.SessionOptions
) -> Side:
    user = _session(version_dir / card.user.file, opts, _graph_inputs(card), {USER_VECTOR_OUTPUT})
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
    known = None
    if card.known_users:  # a lookup teacher: the users it can score
        known = _npy(version_dir / card.known_users).astype(bool)
        if known.shape != (n_users,):
            raise ManifestError(
                f"{version_dir / card.known_users}: shape {known.shape}, expected ({n_users},)"
            )
        known.setflags(write=False)
    topk, scores = ranking_sessions(version_dir, card, vectors, opts)
    return Side(name, topk, user, vectors, card.history_len, card.padding_value, card.oov_user, known, scores)


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
            (uvec,) = side.user.run([USER_VECTOR_OUTPUT], feeds)
            if side.topk is not None:
                scores, indices = side.topk.run(
                    [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
                )
            else:
                ranked = exact_top_k(side.scores, n, uvec, [k, k], [()] * 2)
                indices, scores = (np.stack(column) for column in zip(*ranked, strict=True))
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


# Names an extra column may not take: the answer's own keys.
RESERVED_ITEM_FIELDS = frozenset({"item_id", "score", "category", "price"})


def read_item_extra(version_dir: Path, manifest: Manifest, n_items: int) -> dict[str, np.ndarray]:
    """The version's extra catalogue columns (manifest.item_extra): column -> read-only str [n_items]."""
    if not manifest.item_extra:
        return {}
    path = version_dir / manifest.item_extra
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {name: npz[name].astype(str) for name in manifest.item_extra_columns}
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read columns {manifest.item_extra_columns}: {exc}") from exc
    for name, values in columns.items():
        if name in RESERVED_ITEM_FIELDS:
            raise ManifestError(f"{path}: column {name!r} clashes with an answer field")
        if values.shape != (n_items,):
            raise ManifestError(f"{path}: column {name!r} has shape {values.shape}, expected ({n_items},)")
        values.setflags(write=False)
    return columns


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
    # The popular fallback's score: each item's share of the training interactions, in [0, 1].
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
    student = _load_side(version_dir, "student", manifest.student, n, len(user_ids), opts)
    # A teacher without oov_user reads the history alone (a history-only teacher), like the student.
    teacher = _load_side(version_dir, "teacher", manifest.teacher, n, len(user_ids), opts)
    total = float(popularity.sum()) if n else 0.0
    popularity = popularity / total if total > 0 else np.zeros_like(popularity)
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
        item_extra=read_item_extra(version_dir, manifest, n),
    )
    probe(model)
    return model


def read_seed(
    model: LoadedModel,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The version's seed interactions as raw (user_ids, item_ids, timestamps, event types or None;
    "" where a row has none), or None when it names no seed. Versions published before the seed held
    the whole log (manifest seed_scope "train") and before it held event types still load."""
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
            codes = npz["event"].astype(np.int64) if "event" in npz.files else None
            types = npz["event_types"].astype(str) if codes is not None else np.zeros(0, str)
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read arrays user, item, timestamp: {exc}") from exc
    user_ids = np.array(list(model.user_index), dtype=str)
    if len(users) and (
        users.min() < 0 or users.max() >= len(user_ids) or items.min() < 0 or items.max() >= model.n_items
    ):
        raise ManifestError(f"{path}: user or item indices outside the id maps")
    events = None
    if codes is not None:
        if len(codes) != len(users) or (len(codes) and (codes.min() < -1 or codes.max() >= len(types))):
            raise ManifestError(f"{path}: 'event' needs {len(users)} codes in [-1, {len(types)})")
        events = np.append(types, "")[np.where(codes < 0, len(types), codes)]
    if model.manifest.seed_scope == "train":
        log.warning(
            "version %s seeds its train split only (published before the seed held the whole log): "
            "each user's last two interactions are missing from the history store until it is republished",
            model.version,
        )
    return user_ids[users], model.item_ids[items], ts, events
