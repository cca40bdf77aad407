"""training/warm/replay.py: which pairs a version trained on, and warm epochs that take every new pair
plus a share of the old, on hand-made logs; train_loop runs an epoch as long as its order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.manifest import Manifest
from training.data.types import Split
from training.fit.examples import build_pairs
from training.fit.loop import train_loop
from training.warm.checkpoints import WarmSource
from training.warm.replay import fresh_pairs, replay_order, trained_counts


def _split(lengths: list[int]) -> Split:
    indptr = np.cumsum([0, *lengths]).astype(np.int64)
    n = int(indptr[-1])
    empty = np.zeros(0, np.int64)
    return Split(
        n_users=len(lengths), n_items=50, train_indptr=indptr, train_items=np.arange(n, dtype=np.int64) % 50,
        train_timestamps=np.arange(n, dtype=np.int64), valid_users=empty, valid_items=empty,
        test_users=empty, test_items=empty,
    )  # fmt: skip


def test_a_pair_is_fresh_when_its_target_comes_after_the_users_trained_interactions() -> None:
    split = _split([4, 3, 2])  # user 0: positions 0-3, user 1: 0-2, user 2: 0-1
    pairs = build_pairs(split, history_len=5)  # targets at positions >= 1
    trained = np.array([2, 0, 5])  # user 0 trained 2, user 1 is new, user 2 trained all it has
    fresh = fresh_pairs(split, pairs, trained)
    position = pairs.pos - split.train_indptr[pairs.user]
    got = sorted(zip(pairs.user[fresh].tolist(), position[fresh].tolist(), strict=True))
    assert got == [(0, 2), (0, 3), (1, 1), (1, 2)]


def test_each_replay_epoch_takes_every_fresh_row_and_a_new_share_of_the_old() -> None:
    fresh = np.zeros(100, dtype=bool)
    fresh[[3, 50, 97]] = True
    order = replay_order(fresh, 0.25)
    rng = np.random.default_rng(0)
    first, second = order(rng), order(rng)
    for epoch in (first, second):
        assert len(epoch) == 3 + round(0.25 * 97) and len(set(epoch.tolist())) == len(epoch)
        assert {3, 50, 97} <= set(epoch.tolist())
    assert set(first.tolist()) != set(second.tolist())  # the old rows are drawn again each epoch
    assert sorted(replay_order(fresh, 1.0)(rng).tolist()) == list(range(100))


def _source(tmp_path: Path, seed_users: list[int], n_users: int, scope: str, seed: bool = True) -> WarmSource:
    if seed:
        np.savez(tmp_path / "seed_interactions.npz", user=np.array(seed_users, dtype=np.int64))
    manifest = Manifest.model_construct(seed_interactions="seed_interactions.npz", seed_scope=scope)
    ids = np.array([f"u{i}" for i in range(n_users)])
    return WarmSource("v", tmp_path, manifest, np.array(["i0"]), ids, {})


def test_trained_counts_are_each_known_users_log_less_its_two_held_out_newest(tmp_path: Path) -> None:
    source = _source(tmp_path, [0, 0, 0, 0, 0, 1, 1, 2, 2, 2], n_users=3, scope="log")
    user_map = np.array([2, -1, 0, 1])  # new users: old 2, a new one, old 0, old 1
    assert trained_counts(source, user_map).tolist() == [1, 0, 3, 0]
    train_only = _source(tmp_path, [0, 0, 0, 0, 0, 1, 1, 2, 2, 2], n_users=3, scope="train")
    assert trained_counts(train_only, user_map).tolist() == [3, 0, 5, 2]


def test_a_version_without_its_log_counts_every_pair_as_new(tmp_path: Path) -> None:
    source = _source(tmp_path, [], n_users=2, scope="log", seed=False)
    assert trained_counts(source, np.array([0, 1])).tolist() == [0, 0]


@pytest.mark.parametrize("order_length", [7, 10])
def test_an_epoch_runs_the_examples_its_order_names(order_length: int) -> None:
    model = torch.nn.Linear(1, 1)
    seen: list[list[int]] = []

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        seen.append(idx.tolist())
        return model(torch.ones(len(idx), 1)).sum()

    train_loop(
        model, 10, batch_loss, lambda: {"ndcg@10": 0.0},
        metric="ndcg@10", lr=0.01, weight_decay=0.0, batch_size=4, epochs=1, patience=1,
        max_seconds=None, seed=0, progress=False, desc="t",
        order_fn=lambda rng: np.arange(order_length)[::-1],
    )  # fmt: skip
    assert [i for batch in seen for i in batch] == list(range(order_length))[::-1]
    assert len(seen) == -(-order_length // 4)
