"""The served version's student ranked on a new holdout: what a retrain is gated against.

A retrain's student and the student serving now answer the same test users from the same test
queries, ranked and excluded alike (training.evaluate.ranking). The served student is run as it is
served: its exported user graph (onnxruntime) and its item vectors, popularity calibration
included, over its own id map. A history item it does not know is left out of its query (as the
service leaves out an unknown id); an item it does not know cannot be recommended by it, so a test
item it does not know is its miss (every such item scores -inf, and ties count against the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.manifest import HISTORY_INPUT, USER_VECTOR_OUTPUT, load_manifest, verify_files
from training.config import PipelineConfig
from training.data.split import validation_split
from training.data.types import Interactions, Split
from training.evaluate.ranking import ScoreFn, evaluate
from training.export.graphs import ort_session
from training.warm.remap import index_map


def compact_histories(histories: np.ndarray, keep: np.ndarray, pad: int) -> np.ndarray:
    """Each row's kept entries, in order, right-aligned (left-padded with `pad`): a history with the
    unknown items left out. histories: int64 [B, L]; keep: bool [B, L]."""
    order = np.argsort(keep, axis=1, kind="stable")  # dropped entries first, kept ones in their order
    out = np.take_along_axis(histories, order, axis=1)
    return np.where(np.take_along_axis(keep, order, axis=1), out, pad)


def served_score_fn(version_dir: Path, item_ids: np.ndarray) -> tuple[ScoreFn, int]:
    """(scores over the new catalog `item_ids`, the served student's history length).

    The version is verified first (every file against its sha256), as the service loads it."""
    manifest = load_manifest(version_dir)
    verify_files(version_dir, manifest)
    card = manifest.student
    old_ids = np.load(version_dir / manifest.item_ids, allow_pickle=False).astype(str)
    vectors = np.load(version_dir / card.item_vectors, allow_pickle=False).astype(np.float32)
    session = ort_session(version_dir / card.user.file)
    n_new = len(item_ids)
    to_old = np.append(index_map(old_ids, item_ids), -1)  # index n_new: the pad -> unknown
    known = np.flatnonzero(to_old[:n_new] >= 0)
    their_rows = to_old[known]

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        mapped = to_old[np.minimum(histories, n_new)]
        query = compact_histories(mapped, mapped >= 0, card.padding_value)
        (vec,) = session.run([USER_VECTOR_OUTPUT], {HISTORY_INPUT: query.astype(np.int64)})
        out = np.full((len(users), n_new), -np.inf, dtype=np.float32)
        out[:, known] = (vec @ vectors.T)[:, their_rows]
        return out

    return score, card.history_len


def served_metrics(
    version_dir: Path, cfg: PipelineConfig, data: Interactions, split: Split
) -> dict[str, Any]:
    """The served student's test metrics on `split`'s holdout, the same users `evaluate_all` ranks
    (`eval.max_users` sample), with how many test items it does not know."""
    e = cfg.eval
    sample = validation_split(split, e.max_users, cfg.seed)
    score, history_len = served_score_fn(Path(version_dir), data.catalog.item_ids)
    metrics = evaluate(
        score, sample, "test", history_len, e.k, e.recall_k, e.batch_size, test_history=e.test_history
    )
    assert isinstance(metrics, dict)
    old_ids = np.load(Path(version_dir) / load_manifest(version_dir).item_ids, allow_pickle=False).astype(str)
    unknown = index_map(old_ids, data.catalog.item_ids[sample.test_items]) < 0
    return {"version": Path(version_dir).name, "student": metrics, "unknown_test_items": int(unknown.sum())}
