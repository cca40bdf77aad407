"""The parity check that gates publishing: the exported graphs against the PyTorch model, row by row.

A float32 graph must return the same top-k in the same order (near-ties within `atol` excepted) and
the same scores and user vectors within `atol`. A reduced item precision (training/export/
item_precision.py) is held to the error bound that precision allows and a minimum top-k overlap
with float32 instead. Any failure raises ParityError before anything is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
    ModelCard,
)
from training.config import PipelineConfig
from training.data.types import Split
from training.evaluate.ranking import padded_histories
from training.export.graphs import (
    ItemPrecision,
    ParityError,
    Side,
    item_matrix,
    ort_session,
    torch_user_vectors,
)
from training.export.item_precision import score_error_bound, topk_overlap

log = logging.getLogger(__name__)


def side_parity(cfg: PipelineConfig, split: Split, model: Any, side: str, card: Any, stage: Path) -> dict:
    """Parity on >= parity_users rows at the model's history length, plus a check at half length."""
    x = cfg.export
    rng = np.random.default_rng(cfg.seed)
    users = rng.permutation(split.n_users)[: x.parity_users].astype(np.int64)
    result = {}
    for label, length, rows in (
        ("full", model.history_len, x.parity_users),
        ("short", max(1, model.history_len // 2), 100),
    ):
        hist = padded_histories(split, users[:rows], length)
        inputs = parity_inputs(hist, users[:rows], split.n_users, split.n_items, rows, cfg.seed)
        atol, least = x.parity_atol, x.min_precision_overlap  # least: reduced item precision only
        result[label] = check_parity(model, side, card, stage, inputs, x.parity_k, atol, min_overlap=least)  # type: ignore[arg-type]
    out = dict(result["full"])
    out["short_history"] = result["short"]
    out["passed"] = result["full"]["passed"] and result["short"]["passed"]
    return out


@dataclass(frozen=True)
class ParityInputs:
    users: np.ndarray  # int64 [B] (teacher only; ignored for the student)
    histories: np.ndarray  # int64 [B, L], left-padded with n_items


def parity_inputs(
    histories: np.ndarray, users: np.ndarray, n_users: int, n_items: int, n_rows: int, seed: int
) -> ParityInputs:
    """At least `n_rows` rows: the given real users' histories, topped up with random histories.

    Random rows have random lengths (0 .. L, so all-padding rows are included) and random users
    (the OOV row n_users included), so a small dataset still checks >= n_rows distinct inputs.
    """
    rng = np.random.default_rng(seed)
    histories = np.asarray(histories, dtype=np.int64)[:n_rows]
    users = np.asarray(users, dtype=np.int64)[:n_rows]
    missing = n_rows - len(histories)
    if missing > 0:
        length = histories.shape[1]
        extra = np.full((missing, length), n_items, dtype=np.int64)
        lengths = rng.integers(0, length + 1, size=missing)
        for row, n in enumerate(lengths):
            if n:
                extra[row, length - n :] = rng.integers(0, n_items, size=n)
        histories = np.concatenate([histories, extra])
        users = np.concatenate([users, rng.integers(0, n_users + 1, size=missing)])
    return ParityInputs(users=users, histories=histories)


def _feeds(card: ModelCard, inputs: ParityInputs, rows: slice) -> dict[str, np.ndarray]:
    feeds = {HISTORY_INPUT: inputs.histories[rows]}
    if card.oov_user is not None:  # the graph reads a user index
        feeds[USER_INPUT] = inputs.users[rows]
    return feeds


def check_parity(
    model: Any,
    side: Side,
    card: ModelCard,
    out_dir: Path,
    inputs: ParityInputs,
    k: int,
    atol: float,
    batch_size: int = 256,
    min_overlap: float = 0.9,
) -> dict[str, Any]:
    """Compare the exported graphs with PyTorch on every row; raise ParityError on any failure.

    The top-k must hold the same items in the same order. Where orders differ only between items
    whose PyTorch scores are within `atol` (near-ties that float rounding may swap), the ONNX list is
    still a correct top-k: accepted, and counted as `tie_swaps`. Scores and user vectors must agree
    within `atol`. A card with a reduced `item_precision` is checked by `check_reduced_parity`
    (`min_overlap` applies there only).
    """
    if card.item_precision != "float32":
        return check_reduced_parity(model, side, card, out_dir, inputs, k, atol, min_overlap, batch_size)
    out_dir = Path(out_dir)
    topk_sess, user_sess = ort_session(out_dir / card.topk.file), ort_session(out_dir / card.user.file)
    items = item_matrix(model)
    k = min(k, items.shape[0])
    n = len(inputs.histories)
    max_score_diff = max_vector_diff = 0.0
    exact_rows = tie_swaps = 0
    bad_rows: list[int] = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        ref_vec = torch_user_vectors(model, side, inputs.users[rows], inputs.histories[rows])
        ref_scores = ref_vec @ items.T  # (B, N)
        ref_idx = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
        ref_top = np.take_along_axis(ref_scores, ref_idx, axis=1)
        feeds = _feeds(card, inputs, rows)
        (vec,) = user_sess.run([USER_VECTOR_OUTPUT], feeds)
        scores, idx = topk_sess.run(
            [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
        )
        max_vector_diff = max(max_vector_diff, float(np.max(np.abs(vec - ref_vec), initial=0.0)))
        max_score_diff = max(max_score_diff, float(np.max(np.abs(scores - ref_top), initial=0.0)))
        same = (idx == ref_idx).all(axis=1)
        exact_rows += int(same.sum())
        for r in np.flatnonzero(~same):
            # The ONNX items' true scores must match the true top-k scores position by position.
            true_of_onnx = ref_scores[r, idx[r]]
            if len(set(idx[r].tolist())) == k and np.all(np.abs(true_of_onnx - ref_top[r]) <= atol):
                tie_swaps += 1
            else:
                bad_rows.append(start + int(r))
    result = {
        "rows": n,
        "k": k,
        "atol": atol,
        "exact_topk_rows": exact_rows,
        "tie_swaps": tie_swaps,
        "mismatched_rows": len(bad_rows),
        "max_abs_score_diff": max_score_diff,
        "max_abs_user_vector_diff": max_vector_diff,
    }
    result["passed"] = not bad_rows and max_score_diff <= atol and max_vector_diff <= atol
    log.info("%s parity: %s", side, result)
    if not result["passed"]:
        raise ParityError(
            f"{side} ONNX parity failed on {n} rows: {len(bad_rows)} top-{k} mismatches "
            f"(first rows {bad_rows[:5]}), max score diff {max_score_diff:.3g}, "
            f"max user-vector diff {max_vector_diff:.3g} (atol {atol})"
        )
    return result


def _within_bound(
    precision: ItemPrecision,
    items: np.ndarray,
    slack: np.ndarray,
    ref_vec: np.ndarray,
    ref_scores: np.ndarray,
    ref_idx: np.ndarray,
    scores: np.ndarray,
    idx: np.ndarray,
) -> tuple[np.ndarray, float]:
    """bool [B]: rows the precision explains, and the largest |graph score - float32 score|.

    A row is explained when its k items are distinct, each returned score is within its bound of
    that item's float32 score, and each returned item's float32 score is within its own bound plus
    the largest bound among the float32 top-k of the float32 k-th score (only then could rounding
    have let it displace a float32 top-k item).
    """
    true_of_graph = np.take_along_axis(ref_scores, idx, axis=1)  # float32 scores of the returned items
    err_graph = score_error_bound(precision, ref_vec, items[idx]) + slack[idx]  # (B, k)
    err_top = score_error_bound(precision, ref_vec, items[ref_idx]) + slack[ref_idx]  # (B, k)
    diff = np.abs(scores - true_of_graph)
    kth = np.take_along_axis(ref_scores, ref_idx[:, -1:], axis=1)  # (B, 1): float32 k-th best score
    displaced_ok = true_of_graph >= kth - err_graph - err_top.max(axis=1, keepdims=True)
    unique = np.array([len(set(r.tolist())) == idx.shape[1] for r in idx])
    ok = (diff <= err_graph).all(axis=1) & displaced_ok.all(axis=1) & unique
    return ok, float(np.max(diff, initial=0.0))


def check_reduced_parity(
    model: Any,
    side: Side,
    card: ModelCard,
    out_dir: Path,
    inputs: ParityInputs,
    k: int,
    atol: float,
    min_overlap: float,
    batch_size: int = 256,
) -> dict[str, Any]:
    """A reduced-precision topk graph against the float32 PyTorch model; ParityError on failure.

    Small reorderings are what a reduced precision does, so they are measured, not failed: the
    mean top-k overlap with the float32 top-k is recorded and must reach `min_overlap`. What must
    hold on every row is what the precision guarantees (`score_error_bound`, plus `atol` for the
    float32 query tower): each returned score is its item's float32 score within the bound, and an
    item can displace a float32 top-k item only if their float32 scores are within their two bounds.
    A wrong matrix, a wrong scale or a broken graph breaks these. The user graph stays float32 and
    must still agree within `atol`.
    """
    precision: ItemPrecision = card.item_precision
    out_dir = Path(out_dir)
    topk_sess, user_sess = ort_session(out_dir / card.topk.file), ort_session(out_dir / card.user.file)
    items = item_matrix(model)
    k = min(k, items.shape[0])
    n = len(inputs.histories)
    # The query tower's own float32 error (<= atol per element) moves a score by <= atol |b|_1.
    slack = atol * (1.0 + np.abs(items).sum(1))  # (N,)
    max_score_diff = max_vector_diff = 0.0
    exact_rows = 0
    overlaps: list[np.ndarray] = []
    bad_rows: list[int] = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        ref_vec = torch_user_vectors(model, side, inputs.users[rows], inputs.histories[rows])
        ref_scores = ref_vec @ items.T  # (B, N)
        ref_idx = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
        feeds = _feeds(card, inputs, rows)
        (vec,) = user_sess.run([USER_VECTOR_OUTPUT], feeds)
        scores, idx = topk_sess.run(
            [SCORES_OUTPUT, INDICES_OUTPUT], {**feeds, K_INPUT: np.array([k], np.int64)}
        )
        max_vector_diff = max(max_vector_diff, float(np.max(np.abs(vec - ref_vec), initial=0.0)))
        if idx.shape != ref_idx.shape or idx.min(initial=0) < 0 or idx.max(initial=0) >= len(items):
            raise ParityError(
                f"{side} {precision} topk graph returned indices {idx.shape} outside the catalog"
            )
        ok, diff = _within_bound(precision, items, slack, ref_vec, ref_scores, ref_idx, scores, idx)
        max_score_diff = max(max_score_diff, diff)
        bad_rows += [start + int(r) for r in np.flatnonzero(~ok)]
        overlaps.append(topk_overlap(idx, ref_idx))
        exact_rows += int((idx == ref_idx).all(axis=1).sum())
    overlap = np.concatenate(overlaps) if overlaps else np.ones(1)
    mean_overlap = float(overlap.mean())
    result: dict[str, Any] = {
        "rows": n,
        "k": k,
        "atol": atol,
        "item_precision": precision,
        "exact_topk_rows": exact_rows,
        "mismatched_rows": len(bad_rows),  # rows breaking the precision's error bound
        f"overlap@{k}": mean_overlap,
        f"min_row_overlap@{k}": float(overlap.min()),
        "min_overlap": min_overlap,
        "max_abs_score_diff": max_score_diff,  # vs the float32 score of the same item
        "max_abs_user_vector_diff": max_vector_diff,
    }
    result["passed"] = not bad_rows and mean_overlap >= min_overlap and max_vector_diff <= atol
    log.info("%s parity (%s item matrix): %s", side, precision, result)
    if not result["passed"]:
        raise ParityError(
            f"{side} ONNX parity ({precision} item matrix) failed on {n} rows: top-{k} overlap with "
            f"float32 {mean_overlap:.3f} (minimum {min_overlap}), {len(bad_rows)} rows outside "
            f"the {precision} error bound (first rows {bad_rows[:5]}), max user-vector diff "
            f"{max_vector_diff:.3g} (atol {atol})"
        )
    return result
