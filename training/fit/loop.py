"""The one training loop every model goes through: early stopping on validation NDCG@k, a time budget,
optional weight averaging, the same code for one process and for torchrun, then the checkpoint.

`fit_stage` runs `train_loop` with a stage's settings and saves the best weights; the teacher's fit
(training/teacher/fit.py) and the student's (training/student/distill.py) only supply the model, the
examples and a batch loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from training import distributed
from training.config import PipelineConfig, StudentConfig, TeacherConfig
from training.data.split import validation_split
from training.data.types import Split
from training.evaluate.ranking import ScoreFn, evaluate
from training.fit.averaging import EpochAverage
from training.fit.lazy_adam import LazyAdam
from training.workdir import save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: torch.nn.Module  # best weights loaded, eval mode
    checkpoint: Path
    valid_metrics: dict[str, float]
    curve: list[dict]  # one dict per epoch: epoch, loss, seconds and the validation metrics
    seconds: float
    calibration: dict | None = None  # the popularity penalty chosen after training (students only)


# ---- examples ---------------------------------------------------------------------------------
# ---- evaluation helpers -----------------------------------------------------------------------
def make_optimizers(model: torch.nn.Module, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """AdamW for dense parameters, lazy Adam (SparseAdam's update, no weight decay; training/fit/lazy_adam.py)
    for tables with sparse gradients."""
    sparse = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids]
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay)]
    if sparse:
        opts.append(LazyAdam(sparse, lr=lr))
    return opts


# ---- the loop ---------------------------------------------------------------------------------
def train_loop(
    model: torch.nn.Module,
    n_examples: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    *,
    metric: str,
    lr: float,
    weight_decay: float,
    batch_size: int,
    epochs: int,
    patience: int,
    max_seconds: float | None,
    seed: int,
    progress: bool,
    desc: str,
    order_fn: Callable[[np.random.Generator], np.ndarray] | None = None,
    average_halflife_epochs: float | None = None,
) -> tuple[list[dict], dict[str, float], float]:
    """AdamW over shuffled example indices; validate each epoch; keep the best weights by `metric`.

    `order_fn(rng)` gives each epoch's permutation of the examples (default: uniform), consumed
    `batch_size` at a time (e.g. `length_bucketed_order`); it may hold fewer than `n_examples` (a
    warm epoch's replay, training/warm/replay.py). With `average_halflife_epochs`, each
    epoch validates the moving average of the weights instead (training/fit/averaging.py), and the best
    averaged weights are the ones kept.

    Stops after `patience` epochs without improvement, or when `max_seconds` is spent (the
    current epoch is cut short and still validated). Returns (curve, best metrics, seconds) with
    the best weights loaded and the model in eval mode.

    One loop for one process and for torchrun, so the two cannot drift apart: every rank draws the
    same seeded permutation and takes a rank-strided share of each global batch
    (`DistContext.shard(pad=True)`), so the optimiser sees the single-process sequence of global
    batches; rank 0 validates, keeps the best weights and decides when to stop, and the decision
    (each epoch) and the best weights (at the end) are broadcast. In a single process every
    distributed helper is an identity or a no-op (training/distributed.py).
    """
    ctx = distributed.current()
    # batch_loss as a module's forward: under torchrun DDP averages its gradients over the ranks.
    step = distributed.loss_step(model, batch_loss, ctx)
    if ctx.distributed:  # same init everywhere (seeded by the caller, broadcast by DDP); dropout per rank
        torch.manual_seed(seed * 1_000_003 + ctx.rank)
    rng = np.random.default_rng(seed)
    opts = make_optimizers(model, lr, weight_decay)
    average = (
        EpochAverage(model, average_halflife_epochs, n_examples, batch_size)
        if average_halflife_epochs
        else None
    )
    t0 = time.perf_counter()
    curve: list[dict] = []
    best: dict[str, float] = {}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if ctx.is_main else {}
    stale = 0
    for epoch in range(1, epochs + 1):
        step.train()
        order = order_fn(rng) if order_fn is not None else rng.permutation(n_examples)
        total, batches, out_of_time = 0.0, 0, False
        bar = tqdm(
            range(0, len(order), batch_size),
            desc=f"{desc} epoch {epoch}",
            disable=not (progress and ctx.is_main),
            leave=False,
        )
        for start in bar:
            loss = step(ctx.shard(order[start : start + batch_size], pad=True))  # this rank's share
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            if average is not None:
                average.update()
            total += loss.detach().item()
            batches += 1
            if max_seconds is not None and distributed.any_rank(time.perf_counter() - t0 > max_seconds):
                out_of_time = True
                break
        model.eval()
        mean_loss = distributed.mean_over_ranks(total, batches)  # a collective: every rank calls it
        stop = False
        if ctx.is_main:  # rank 0 validates and decides; a single process is rank 0
            with average.applied() if average is not None else nullcontext():
                metrics = validate()
                improved = not best or metrics[metric] > best[metric]
                if improved:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            row = {"epoch": epoch, "loss": mean_loss, "seconds": time.perf_counter() - t0, **metrics}
            curve.append(row)
            log.info("%s epoch %d: loss %.4f %s %.4f", desc, epoch, row["loss"], metric, metrics[metric])
            if improved:
                best, stale = metrics, 0
            else:
                stale += 1
            stop = stale >= patience or out_of_time
        if ctx.broadcast_object(stop):
            break
    if ctx.is_main:
        model.load_state_dict(best_state)
    distributed.broadcast_module(model)  # rank 0's best weights on every rank
    curve, best = ctx.broadcast_object((curve, best))
    model.eval()
    return curve, best, time.perf_counter() - t0


def fit_stage(
    model: torch.nn.Module,
    n_examples: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    score: ScoreFn,
    split: Split,
    stage: TeacherConfig | StudentConfig,
    cfg: PipelineConfig,
    *,
    checkpoint: Callable[[Any], dict],
    path: Path,
    desc: str,
    progress: bool,
    order_fn: Callable[[np.random.Generator], np.ndarray] | None = None,
) -> FitResult:
    """`train_loop` with a stage's settings, early-stopping on validation NDCG@k, then the checkpoint.

    Shared by `fit_teacher` and `distill.fit_student`, so both stages validate on the same seeded
    sample of users, stop on the same metric and save alike. `checkpoint(model)` is the payload,
    taken after the model is back on the host.
    """
    vsplit = validation_split(split, stage.valid_max_users, cfg.seed)

    def validate() -> dict[str, float]:
        e = cfg.eval
        return evaluate(score, vsplit, "valid", stage.history_len, e.k, e.recall_k, e.batch_size)

    curve, best, seconds = train_loop(
        model, n_examples, batch_loss, validate,
        metric=f"ndcg@{cfg.eval.k}", lr=stage.lr, weight_decay=stage.weight_decay,
        batch_size=stage.batch_size, epochs=stage.epochs, patience=stage.patience,
        max_seconds=stage.max_train_seconds, seed=cfg.seed, progress=progress, desc=desc,
        order_fn=order_fn, average_halflife_epochs=stage.average_halflife_epochs,
    )  # fmt: skip
    model.cpu()  # soft labels, evaluation and export run on the host
    save_checkpoint(checkpoint(model), path)
    return FitResult(model=model, checkpoint=path, valid_metrics=best, curve=curve, seconds=seconds)


# ---- teacher ----------------------------------------------------------------------------------
