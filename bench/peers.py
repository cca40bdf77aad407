"""Peers the teacher must beat: ALS and BPR (benfred/implicit) and a sampled-softmax MF in torch.

All three are user-id factor models, scored as `user_factors @ item_factors.T` and ranked by our own
`training.evaluate.ranking.evaluate`, so every model in a benchmark is measured the same way (full ranking,
train items excluded). Each peer is tuned on the VALIDATION item with a small grid; the test item is
only looked at for the chosen configuration.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data.types import Split
from training.evaluate.peers import (  # the ALS peer and the tuning loop the pipeline's report uses too
    FactorModel,
    Metrics,
    Params,
    Peer,
    fit_als,
    fit_implicit,
    grid,
    train_matrix,
    tune,
)
from training.evaluate.ranking import evaluate

log = logging.getLogger(__name__)

__all__ = [
    "FactorModel",
    "Peer",
    "SeedRun",
    "default_peers",
    "fit_als",
    "fit_bpr",
    "fit_mf",
    "grid",
    "run_seeds",
    "train_matrix",
    "tune",
]


@dataclass(frozen=True)
class SeedRun:
    """One seed of a tuned peer: its validation and test metrics."""

    seed: int
    valid: Metrics
    test: Metrics
    n_parameters: int
    seconds: float
    info: dict[str, Any]


def fit_bpr(split: Split, params: Params, seed: int, threads: int = 2) -> FactorModel:
    """implicit's BPR (Rendle et al. 2009). implicit appends an item-bias column (users hold a constant 1).

    params: factors, learning_rate, regularization, iterations.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    users, items, seconds = fit_implicit(
        split,
        lambda: BayesianPersonalizedRanking(
            factors=int(params["factors"]),
            learning_rate=float(params["learning_rate"]),
            regularization=float(params["regularization"]),
            iterations=int(params["iterations"]),
            num_threads=threads,
            random_state=seed,
        ),
    )
    # The users' constant bias column is not learned: do not count it.
    return FactorModel(users, items, users.size - users.shape[0] + items.size, seconds)


def fit_mf(split: Split, params: Params, seed: int, k: int = 10, threads: int = 1) -> FactorModel:
    """Matrix factorisation trained with in-batch softmax and logQ correction (Yi et al., RecSys 2019).

    Per batch of train pairs (u_b, i_b): logits[b, c] = cos(U[u_b], V[i_c]) / T - log q(i_c), where
    q is the item's share of train interactions (the rate at which it shows up as an in-batch
    negative); label = the diagonal; repeats of row b's own item elsewhere in the batch are masked.
    Early-stops on validation NDCG@k (patience epochs) and keeps the best epoch's weights.

    params: dim, temperature, lr, weight_decay, batch_size, max_epochs, patience.
    threads: torch intra-op threads while fitting (restored after). One by default: on a shared,
    busy 2-core machine a 2-thread pool made each epoch ~10x slower (65 s vs 6 s on ml-100k).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit_mf(split, params, seed, k)
    finally:
        torch.set_num_threads(before)


def _fit_mf(split: Split, params: Params, seed: int, k: int) -> FactorModel:
    import torch

    dim, temperature = int(params["dim"]), float(params["temperature"])
    batch_size, max_epochs, patience = (
        int(params["batch_size"]),
        int(params["max_epochs"]),
        int(params["patience"]),
    )
    gen = torch.Generator().manual_seed(seed)
    user_emb = torch.nn.Parameter(torch.randn(split.n_users, dim, generator=gen) * 0.1)
    item_emb = torch.nn.Parameter(torch.randn(split.n_items, dim, generator=gen) * 0.1)
    opt = torch.optim.Adam(
        [user_emb, item_emb], lr=float(params["lr"]), weight_decay=float(params.get("weight_decay", 0.0))
    )
    pop = split.item_popularity()
    log_q = torch.from_numpy(np.log(np.maximum(pop, 1.0) / pop.sum())).float()  # (N,)
    users_all = torch.from_numpy(split.train_users)
    items_all = torch.from_numpy(split.train_items)

    def factors() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            u = torch.nn.functional.normalize(user_emb, dim=1)
            v = torch.nn.functional.normalize(item_emb, dim=1)
        return u.numpy().copy(), v.numpy().copy()

    best_ndcg, best_epoch, best = -1.0, 0, factors()
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(len(users_all), generator=gen)
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            u, i = users_all[idx], items_all[idx]
            uv = torch.nn.functional.normalize(user_emb[u], dim=1)  # (B, d)
            iv = torch.nn.functional.normalize(item_emb[i], dim=1)  # (B, d)
            logits = uv @ iv.T / temperature - log_q[i][None, :]  # (B, B)
            same = (i[:, None] == i[None, :]) & ~torch.eye(len(i), dtype=torch.bool)
            logits = logits.masked_fill(same, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(i)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        current = factors()
        model = FactorModel(current[0], current[1], 0, 0.0)
        ndcg = evaluate(model.score_fn(), split, "valid", history_len=1, k=k)[f"ndcg@{k}"]
        log.debug("MF epoch %d: valid ndcg@%d = %.4f", epoch, k, ndcg)
        if ndcg > best_ndcg:
            best_ndcg, best_epoch, best = ndcg, epoch, current
        elif epoch - best_epoch >= patience:
            break
    seconds = time.perf_counter() - start
    n_parameters = (split.n_users + split.n_items) * dim
    return FactorModel(
        best[0], best[1], n_parameters, seconds, {"best_epoch": best_epoch, "epochs_run": epoch}
    )


def default_peers(quick: bool = False) -> list[Peer]:
    """The three peers with their tuning grids; quick=True gives a one-config grid each (tests, smoke runs)."""
    if quick:
        return [
            Peer("ALS", fit_als, grid(factors=[16], regularization=[0.1], iterations=[10], alpha=[1.0])),
            Peer(
                "BPR",
                fit_bpr,
                grid(factors=[16], learning_rate=[0.05], regularization=[0.01], iterations=[50]),
            ),
            Peer(
                "MF",
                fit_mf,
                grid(
                    dim=[16],
                    temperature=[0.1],
                    lr=[0.01],
                    weight_decay=[0.0],
                    batch_size=[256],
                    max_epochs=[10],
                    patience=[3],
                ),
            ),
        ]
    return [
        Peer(
            "ALS",
            fit_als,
            grid(
                factors=[16, 32, 64, 128],
                regularization=[0.01, 0.1, 1.0],
                iterations=[15],
                alpha=[0.5, 1.0, 5.0],
            ),
        ),
        Peer(
            "BPR",
            fit_bpr,
            grid(
                factors=[32, 64, 128],
                learning_rate=[0.01],
                regularization=[0.001, 0.01],
                iterations=[50, 100, 150],
            ),
        ),
        Peer(
            "MF",
            fit_mf,
            grid(
                dim=[64],
                temperature=[0.05, 0.1, 0.2],
                lr=[3e-3, 1e-2],
                weight_decay=[0.0],
                batch_size=[1024],
                max_epochs=[40],
                patience=[3],
            ),
        ),
    ]


def run_seeds(
    peer: Peer, split: Split, params: Params, seeds: list[int], k: int = 10, recall_k: int = 50
) -> list[SeedRun]:
    """Fit `params` once per seed and measure validation and test metrics."""
    runs = []
    for seed in seeds:
        model = peer.fit(split, params, seed)
        valid = evaluate(model.score_fn(), split, "valid", history_len=1, k=k, recall_k=recall_k)
        test = evaluate(model.score_fn(), split, "test", history_len=1, k=k, recall_k=recall_k)
        runs.append(SeedRun(seed, valid, test, model.n_parameters, model.seconds, dict(model.info)))
        log.info("%s seed %d: test ndcg@%d = %.4f", peer.name, seed, k, test[f"ndcg@{k}"])
    return runs
