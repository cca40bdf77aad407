"""Full-ranking evaluation: every model is scored over the whole catalog, the same way.

Metrics are free functions over the 0-based rank of each user's single held-out item among the
items that user may be recommended: everything the query has seen is excluded.

The test query follows the field's standard leave-one-out protocol by default (SASRec, BERT4Rec,
RecBole and the published Amazon figures): it is the user's train items *plus the validation item*,
which is what a live service sees (everything the user did before). `test_history="train"` keeps
the older, harder query of train items only; on sparse shop logs the two differ a lot (ALS on
Amazon Beauty: NDCG@10 0.024 with train only, 0.034 standard), so every figure says which it used.
An item scoring exactly as the target counts against the model (`target_ranks`): a model that cannot
tell the target from other items has not ranked it above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from core.topk import top_k
from training.data.types import Split

Stage = Literal["valid", "test"]
# What the test query sees: the standard protocol ("train+valid") or train items only ("train").
TestHistory = Literal["train+valid", "train"]
# Given user indices [B] and their padded histories [B, L], return scores [B, n_items] (float32).
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def padded_histories(
    split: Split, users: np.ndarray, length: int, then: np.ndarray | None = None
) -> np.ndarray:
    """int64 [B, length]: each user's last `length` train items, left-padded with n_items (the pad).

    `then[row]`, when given, is one more item the user saw after the train items (the validation
    item of the standard test query): it becomes the most recent one.
    """
    out = np.full((len(users), length), split.n_items, dtype=np.int64)
    for row, u in enumerate(users):
        items = split.history(int(u))
        if then is not None:
            items = np.append(items, then[row])
        items = items[-length:]
        if len(items):
            out[row, length - len(items) :] = items
    return out


def exclude_seen(
    scores: np.ndarray, split: Split, users: np.ndarray, extra: np.ndarray | None = None
) -> None:
    """In place: -inf for every train item of each user (and `extra[row]`, e.g. the validation item)."""
    for row, u in enumerate(users):
        scores[row, split.history(int(u))] = -np.inf
        if extra is not None:
            scores[row, extra[row]] = -np.inf


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int64 [B]: how many other items score at least as high as each row's target (0 = ranked first).

    Ties count against the model. Counting only strictly better items put a constant scorer's
    target first every time: a lookup teacher's all-zero vector for an unknown user, or the
    popularity peer's integer counts, won ties they had no information to win. The alternative, the
    expected rank under a random order of the tied items, is not what the metrics need: HR@k and
    NDCG@k of the expected rank differ from their expected values when a tie straddles the cut-off
    (Amazon Beauty, popularity peer: HR@10 0.0120 from the mid-rank, 0.0115 expected over tie
    orders, 0.0110 with ties against it), so this rule is the simple lower bound, exact on integer
    ranks. A NaN target score ranks last.
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    at_least = (scores >= target_scores).sum(axis=1) - 1  # the target itself is not counted
    return np.where(np.isnan(target_scores[:, 0]), scores.shape[1] - 1, at_least).astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of users whose held-out item is in the top-k. With one held-out item, Recall@k == HR@k."""
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """float64 [B]: each user's NDCG@k with one relevant item, 1/log2(rank + 2) inside the top-k, else 0."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item (the mean of `ndcg_gains`)."""
    return float(np.mean(ndcg_gains(ranks, k))) if len(ranks) else 0.0


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the full catalog (no cut-off)."""
    return float(np.mean(1.0 / (ranks + 1.0))) if len(ranks) else 0.0


def coverage(topk_lists: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one user's top-k list."""
    return len(np.unique(topk_lists)) / n_items if n_items else 0.0


def summarize(
    ranks: np.ndarray, topk_lists: np.ndarray, n_items: int, k: int, recall_k: int
) -> dict[str, float]:
    return {
        f"hr@{k}": hit_rate(ranks, k),
        f"ndcg@{k}": ndcg(ranks, k),
        f"recall@{recall_k}": hit_rate(ranks, recall_k),
        "mrr": mrr(ranks),
        f"coverage@{k}": coverage(topk_lists, n_items),
        "users": float(len(ranks)),
    }


def rank_targets(
    score_fn: ScoreFn,
    split: Split,
    stage: Stage,
    history_len: int,
    k: int = 10,
    batch_size: int = 512,
    test_history: TestHistory = "train+valid",
) -> tuple[np.ndarray, np.ndarray]:
    """Score every evaluated user over the full catalog: (ranks [U], top-k lists [U, k]).

    valid: history = train items, target = validation item, train items excluded.
    test:  history = train items + the validation item (standard protocol; `test_history="train"`:
           train items only), target = test item, train items and the validation item excluded.
    """
    users = split.valid_users if stage == "valid" else split.test_users
    targets = split.valid_items if stage == "valid" else split.test_items
    all_ranks, all_top = [], []
    for start in range(0, len(users), batch_size):
        batch_users = users[start : start + batch_size]
        extra = split.valid_items[start : start + batch_size] if stage == "test" else None
        then = extra if test_history == "train+valid" else None
        histories = padded_histories(split, batch_users, history_len, then)
        scores = np.array(score_fn(batch_users, histories), dtype=np.float32, copy=True)
        exclude_seen(scores, split, batch_users, extra)
        all_ranks.append(target_ranks(scores, targets[start : start + batch_size]))
        all_top.append(top_k(scores, k))
    ranks = np.concatenate(all_ranks) if all_ranks else np.zeros(0, np.int64)
    top = np.concatenate(all_top) if all_top else np.zeros((0, k), np.int64)
    return ranks, top


def evaluate(
    score_fn: ScoreFn,
    split: Split,
    stage: Stage,
    history_len: int,
    k: int = 10,
    recall_k: int = 50,
    batch_size: int = 512,
    return_topk: bool = False,
    test_history: TestHistory = "train+valid",
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """`rank_targets`, summarised (HR, NDCG, recall, MRR, coverage)."""
    ranks, top = rank_targets(score_fn, split, stage, history_len, k, batch_size, test_history)
    metrics = summarize(ranks, top, split.n_items, k, recall_k)
    return (metrics, top) if return_topk else metrics
