"""Peers on a known-answer checkerboard: two user groups, each only ever touching its own half of the items.

Any working collaborative model must recommend a user's own block; a random ranking hits it half
of the time. Also hand-computed checks of the helpers (grid, train matrix, scores, tuning).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.peers import fit_bpr, fit_mf, run_seeds
from tests.fixtures.hand_made import hand_made_log
from training.data.split import leave_last_out
from training.data.types import Split
from training.evaluate.peers import FactorModel, Peer, fit_als, grid, train_matrix, tune
from training.evaluate.ranking import evaluate

N_USERS, N_ITEMS, BLOCK, PER_USER = 40, 40, 20, 12


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is faster, and a 2-thread pool thrashes on a shared, busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkerboard() -> Split:
    """Users 0-19 touch only items 0-19, users 20-39 only items 20-39; 12 items each, in time order."""
    rng = np.random.default_rng(0)
    user, item, ts = [], [], []
    for u in range(N_USERS):
        block = 0 if u < N_USERS // 2 else BLOCK
        picks = block + rng.choice(BLOCK, size=PER_USER, replace=False)
        user += [u] * PER_USER
        item += picks.tolist()
        ts += list(range(PER_USER))
    return leave_last_out(hand_made_log(user, item, N_USERS, N_ITEMS, ts))


def _block(x: np.ndarray) -> np.ndarray:
    return (x >= BLOCK).astype(int)


CASES = [
    ("ALS", fit_als, {"factors": 4, "regularization": 0.1, "iterations": 15, "alpha": 1.0}),
    ("BPR", fit_bpr, {"factors": 4, "learning_rate": 0.05, "regularization": 0.01, "iterations": 300}),
    (
        "MF",
        fit_mf,
        {
            "dim": 8,
            "temperature": 0.2,
            "lr": 0.05,
            "weight_decay": 0.0,
            "batch_size": 64,
            "max_epochs": 20,
            "patience": 20,
        },
    ),
]


@pytest.mark.parametrize(("name", "fit", "params"), CASES, ids=[c[0] for c in CASES])
def test_peer_recommends_the_users_own_block(checkerboard: Split, name: str, fit, params) -> None:
    model = fit(checkerboard, params, 0)
    metrics, top = evaluate(model.score_fn(), checkerboard, "test", history_len=1, k=5, return_topk=True)
    users = checkerboard.test_users
    in_block = _block(top) == _block(users)[:, None]
    # 9 unseen items remain in each user's block (20 - 10 train - 1 validation): all 5 slots can be in-block.
    assert in_block.mean() >= 0.9, f"{name}: only {in_block.mean():.2f} of top-5 slots in the user's block"
    # A random ranking of the 29 candidates gives HR@5 = 5/29 = 0.17; the block alone gives 5/9 = 0.56.
    assert metrics["hr@5"] > 0.35
    assert model.user_factors.shape[0] == N_USERS and model.item_factors.shape[0] == N_ITEMS


def test_random_factors_do_not_find_the_block(checkerboard: Split) -> None:
    """The contrast the test above relies on: random factors put about half the slots in-block."""
    rng = np.random.default_rng(1)
    model = FactorModel(rng.normal(size=(N_USERS, 4)), rng.normal(size=(N_ITEMS, 4)), 0, 0.0)
    _, top = evaluate(model.score_fn(), checkerboard, "test", history_len=1, k=5, return_topk=True)
    in_block = _block(top) == _block(checkerboard.test_users)[:, None]
    assert in_block.mean() < 0.75


def test_parameter_counts(checkerboard: Split) -> None:
    als = fit_als(checkerboard, CASES[0][2], 0)
    assert als.n_parameters == (N_USERS + N_ITEMS) * 4
    bpr = fit_bpr(checkerboard, CASES[1][2], 0)
    # implicit adds an item-bias column; the users' constant 1 column is not a parameter.
    assert bpr.n_parameters == bpr.user_factors.size - N_USERS + bpr.item_factors.size
    assert bpr.n_parameters >= (N_USERS + N_ITEMS) * 4


def test_same_seed_same_model(checkerboard: Split) -> None:
    a = fit_mf(checkerboard, dict(CASES[2][2], max_epochs=2), 3)
    b = fit_mf(checkerboard, dict(CASES[2][2], max_epochs=2), 3)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert a.info["best_epoch"] in (1, 2)


def test_grid_is_the_cartesian_product_in_order() -> None:
    assert grid(a=[1, 2], b=["x", "y"]) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert grid(a=[]) == []


def test_train_matrix_holds_only_train_interactions() -> None:
    # User 0: items 2, 0, 1, 3 in time order -> train {2, 0}, valid 1, test 3. User 1: 2 rows -> train only.
    log = hand_made_log(
        [0, 0, 0, 0, 1, 1], [2, 0, 1, 3, 3, 3], n_users=2, n_items=4, timestamp=[1, 2, 3, 4, 1, 2]
    )
    split = leave_last_out(log, min_interactions=3)
    dense = train_matrix(split).toarray()
    np.testing.assert_array_equal(dense, [[1, 0, 1, 0], [0, 0, 0, 2]])  # user 1's repeat summed


def test_score_fn_is_the_dot_product_and_ignores_history() -> None:
    model = FactorModel(
        np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[3.0, 1.0], [0.0, -1.0], [1.0, 1.0]]), 10, 0.0
    )
    scores = model.score_fn()(np.array([1, 0]), np.zeros((2, 7), np.int64))
    np.testing.assert_array_equal(scores, [[2.0, -2.0, 2.0], [3.0, 0.0, 1.0]])


def _oracle_fit(split: Split, params: dict, seed: int) -> FactorModel:
    """Block-indicator factors when params['good'], else anti-block: tuning must pick 'good'."""
    sign = 1.0 if params["good"] else -1.0
    users = np.stack([_block(np.arange(split.n_users)) == b for b in (0, 1)], axis=1).astype(float)
    items = np.stack(
        [_block(np.arange(split.n_items) * N_ITEMS // split.n_items) == b for b in (0, 1)], axis=1
    )
    return FactorModel(users, sign * items.astype(float), 7, 0.5, {"best_epoch": 3})


def test_tune_picks_the_best_validation_config(checkerboard: Split) -> None:
    peer = Peer("oracle", _oracle_fit, [{"good": False}, {"good": True}])
    # The good oracle scores its block's 10 unseen items alike, and ties count against it: the
    # validation item ranks 9th, inside the top 10 (the bad one ranks it below the other block).
    result = tune(peer, checkerboard, seed=0, k=10, recall_k=20)
    assert result.best == {"good": True}
    assert [t.params for t in result.trials] == [
        {"good": False, "best_epoch": 3},
        {"good": True, "best_epoch": 3},
    ]
    assert result.trials[0].valid["ndcg@10"] == 0.0
    assert result.trials[1].valid["ndcg@10"] == pytest.approx(1 / np.log2(11))  # rank 9 for every user
    runs = run_seeds(peer, checkerboard, result.best, [0, 1], k=5, recall_k=10)
    assert [r.seed for r in runs] == [0, 1]
    assert runs[0].n_parameters == 7 and runs[0].test["users"] == N_USERS
