"""Classic peers beside the deep models: implicit ALS, tuned on the validation item, in every report.

A user-id factor model is scored as `user_factors @ item_factors.T` and ranked by our own
`training.evaluate.ranking.evaluate`, so a peer gets the same full ranking and the same exclusions (every
item the query has seen) as the teacher and the students. The peer is tuned on the VALIDATION item
over a small grid (each grid point fitted on the train interactions); for the standard test query
(train items + the validation item, `eval.test_history = "train+valid"`) the chosen point is then
refitted on train + validation interactions, so the peer knows what the query knows. With the
train-only query the train-only fit is the one tested. bench/peers.py builds its peers on this.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.data.types import Split
from training.evaluate.ranking import ScoreFn, TestHistory, evaluate

log = logging.getLogger(__name__)

Params = dict[str, Any]
Metrics = dict[str, float]


@dataclass(frozen=True)
class FactorModel:
    """A fitted user-id model: score(u, i) = user_factors[u] . item_factors[i]."""

    user_factors: np.ndarray  # float32 [n_users, d]
    item_factors: np.ndarray  # float32 [n_items, d]
    n_parameters: int
    seconds: float  # wall time of the fit
    info: dict[str, Any] = field(default_factory=dict)  # e.g. an early-stopped model's best epoch

    def score_fn(self) -> ScoreFn:
        """Scores for `training.evaluate.ranking.evaluate`; histories are ignored (these models know users by id)."""

        def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
            return self.user_factors[users] @ self.item_factors.T  # (B, N)

        return score


FitFn = Callable[[Split, Params, int], FactorModel]


@dataclass(frozen=True)
class Peer:
    """A peer's fit function and the grid it is tuned over."""

    name: str
    fit: FitFn
    grid: list[Params]


@dataclass(frozen=True)
class Trial:
    params: Params
    valid: Metrics
    seconds: float


@dataclass(frozen=True)
class TuneResult:
    peer: str
    best: Params
    trials: list[Trial]
    metric: str


def grid(**axes: list[Any]) -> list[Params]:
    """The cartesian product of the axes, in a fixed order: grid(a=[1, 2], b=[3]) -> [{a:1,b:3}, {a:2,b:3}]."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(axes[k] for k in keys))]


def train_matrix(split: Split, with_valid: bool = False) -> sp.csr_matrix:
    """float32 user x item CSR of the train interactions (1 per interaction, repeats summed).

    with_valid: also each evaluated user's validation item (the refit for the standard test query).
    """
    users, items = split.train_users, split.train_items
    if with_valid:
        users = np.concatenate([users, split.valid_users])
        items = np.concatenate([items, split.valid_items])
    data = np.ones(len(items), dtype=np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=(split.n_users, split.n_items))
    matrix.sum_duplicates()
    return matrix


def _blas_single_thread() -> Any:
    """implicit warns (and slows down) when BLAS threads compete with its own; pin BLAS to one thread."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def fit_implicit(
    split: Split, build: Callable[[], Any], with_valid: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """(user factors, item factors, seconds) of an implicit model built and fitted on the train matrix.

    Built inside the single-thread BLAS block too: implicit checks the BLAS config when the model is built.
    """
    start = time.perf_counter()
    with _blas_single_thread():
        model = build()
        model.fit(train_matrix(split, with_valid), show_progress=False)
    seconds = time.perf_counter() - start
    return np.asarray(model.user_factors), np.asarray(model.item_factors), seconds


def fit_als(
    split: Split, params: Params, seed: int, threads: int = 2, with_valid: bool = False
) -> FactorModel:
    """implicit's ALS (Hu, Koren & Volinsky 2008) on the binary train matrix.

    params: factors, regularization, iterations, alpha (confidence = 1 + alpha * count).
    threads: implicit's own threads (0 = every core). with_valid: fit on train + validation items.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    users, items, seconds = fit_implicit(
        split,
        lambda: AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params.get("alpha", 1.0)),
            iterations=int(params["iterations"]),
            num_threads=threads,
            random_state=seed,
        ),
        with_valid,
    )
    return FactorModel(users, items, users.size + items.size, seconds)


def tune(
    peer: Peer,
    split: Split,
    seed: int,
    k: int = 10,
    recall_k: int = 50,
    batch_size: int = 512,
    eval_split: Split | None = None,
) -> TuneResult:
    """Fit every grid point on `split` with `seed`; keep the best validation NDCG@k (first wins a tie).

    eval_split: the users whose validation item is ranked (default `split`; e.g. a seeded sample).
    """
    metric = f"ndcg@{k}"
    trials: list[Trial] = []
    for params in peer.grid:
        model = peer.fit(split, params, seed)
        valid = evaluate(
            model.score_fn(), eval_split or split, "valid", history_len=1, k=k, recall_k=recall_k,
            batch_size=batch_size,
        )  # fmt: skip
        assert isinstance(valid, dict)
        chosen = dict(params, **{key: val for key, val in model.info.items() if key == "best_epoch"})
        trials.append(Trial(chosen, valid, model.seconds))
        log.info("%s %s: valid %s = %.4f (%.1fs)", peer.name, params, metric, valid[metric], model.seconds)
    if not trials:
        raise ValueError(f"{peer.name}: the tuning grid is empty")
    best = max(range(len(trials)), key=lambda t: (trials[t].valid[metric], -t))
    return TuneResult(peer.name, dict(peer.grid[best]), trials, metric)


@dataclass(frozen=True)
class TunedPeer:
    """A peer tuned on the validation item, with the model its test query is scored by."""

    name: str
    model: FactorModel  # the refit on train + validation items for the standard test query
    tuning: TuneResult
    refit: TestHistory  # which interactions `model` was fitted on
    seconds: float  # tuning and refit together

    def record(self) -> dict[str, Any]:
        """What the report keeps: the chosen point, every trial's validation figure, the time."""
        metric = self.tuning.metric
        return {
            "chosen": self.tuning.best,
            "metric": metric,
            "trials": [
                {"params": t.params, metric: t.valid[metric], "seconds": t.seconds}
                for t in self.tuning.trials
            ],
            "fitted_on": self.refit,
            "parameters": self.model.n_parameters,
            "seconds": self.seconds,
        }


def als_peer(
    split: Split,
    params_grid: list[Params],
    seed: int,
    threads: int,
    test_history: TestHistory,
    k: int = 10,
    recall_k: int = 50,
    batch_size: int = 512,
    eval_split: Split | None = None,
) -> TunedPeer:
    """ALS tuned on the validation item over `params_grid`, refitted for the test query.

    test_history "train+valid": the chosen point is refitted on train + validation interactions
    (the standard protocol's test query sees the validation item, so the peer must too); "train":
    the chosen point fitted on train interactions, as it was tuned.
    """
    start = time.perf_counter()
    fit = functools.partial(fit_als, threads=threads)
    tuning = tune(Peer("ALS", fit, params_grid), split, seed, k, recall_k, batch_size, eval_split)
    # One more fit of the chosen point (same seed): on train + validation for the standard query;
    # with the train-only query it repeats the tuning fit, rather than holding every grid point's factors.
    model = fit_als(split, tuning.best, seed, threads, with_valid=test_history == "train+valid")
    seconds = time.perf_counter() - start
    log.info("ALS peer: chose %s, fitted on %s, %.1f s in all", tuning.best, test_history, seconds)
    return TunedPeer("als", model, tuning, test_history, seconds)


def implicit_missing() -> str | None:
    """Why the ALS peer cannot run here (None: it can)."""
    try:
        import implicit.cpu.als  # noqa: F401
        import threadpoolctl  # noqa: F401
    except ImportError as exc:
        return f"implicit is not installed ({exc}); pip install 'recdistill[bench]' adds it"
    return None
