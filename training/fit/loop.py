"""Training examples, the shared training loop (early stopping, time budget, checkpoint) and `fit_teacher`.

Examples are built once as arrays from the Split (no per-example Python in the hot path):
every train interaction after a user's first is a (history -> next item) pair. The teacher sees them
as windows of `history_len` consecutive pairs (one causal forward pass scores all L positions);
the student gathers each pair's left-padded history on the fly from the flat train array.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from training.config import PipelineConfig, StudentConfig, TeacherConfig
from training.data.types import Catalog, Split
from training.evaluate.ranking import ScoreFn, evaluate
from training.fit import distributed
from training.fit.averaging import EpochAverage
from training.fit.losses import hard_label_loss, sampled_softmax_loss
from training.teacher.protocol import Teacher
from training.teacher.two_tower import TwoTowerTeacher, attribute_table, teacher_checkpoint

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
@dataclass(frozen=True)
class Pairs:
    """Every (history -> next item) pair of the train split, in user then time order.

    pos[i] indexes split.train_items at the pair's target; its history is the `history_len`
    items before it (same user only). window/col locate the pair in the teacher's windows.
    """

    user: np.ndarray  # int64 [P]
    pos: np.ndarray  # int64 [P]: global index of the target in split.train_items
    window: np.ndarray  # int64 [P]
    col: np.ndarray  # int64 [P]
    n_windows: int


def build_pairs(split: Split, history_len: int) -> Pairs:
    """Vectorised: pairs counted from each user's most recent one backwards, L per window."""
    L = history_len
    users = split.train_users
    start = split.train_indptr[users]
    t = np.arange(len(users), dtype=np.int64) - start  # position inside the user's sequence
    keep = t >= 1
    user, pos, t = users[keep], np.flatnonzero(keep).astype(np.int64), t[keep]
    n = np.diff(split.train_indptr)[user]  # train length of each pair's user
    r = (n - 1) - t  # 0 = the user's last pair
    k = r // L
    n_win_user = np.zeros(split.n_users, dtype=np.int64)
    np.maximum.at(n_win_user, user, k + 1)
    first = np.zeros(split.n_users + 1, dtype=np.int64)
    np.cumsum(n_win_user, out=first[1:])
    return Pairs(user=user, pos=pos, window=first[user] + k, col=(L - 1) - r % L, n_windows=int(first[-1]))


def window_tensors(split: Split, pairs: Pairs, history_len: int) -> tuple[torch.Tensor, ...]:
    """(users [W], inputs [W, L] left-padded with n_items, targets [W, L] with -1 where no pair)."""
    W, L = pairs.n_windows, history_len
    users = np.zeros(W, dtype=np.int64)
    users[pairs.window] = pairs.user
    inputs = np.full((W, L), split.n_items, dtype=np.int64)
    targets = np.full((W, L), -1, dtype=np.int64)
    inputs[pairs.window, pairs.col] = split.train_items[pairs.pos - 1]
    targets[pairs.window, pairs.col] = split.train_items[pairs.pos]
    return torch.from_numpy(users), torch.from_numpy(inputs), torch.from_numpy(targets)


def gather_histories(split: Split, pairs: Pairs, idx: np.ndarray, history_len: int) -> np.ndarray:
    """int64 [B, L]: the left-padded histories of pairs `idx` (items before each target, same user)."""
    return histories_before(split, pairs.user[idx], pairs.pos[idx], history_len)


def histories_before(split: Split, user: np.ndarray, pos: np.ndarray, history_len: int) -> np.ndarray:
    """int64 [B, L]: the user's train items before global position `pos`, left-padded with n_items.

    pos = split.train_indptr[user + 1] gives the whole train history (what the service sees).
    """
    src = pos[:, None] - history_len + np.arange(history_len)[None]  # (B, L), last column = pos - 1
    valid = src >= split.train_indptr[user][:, None]
    return np.where(valid, split.train_items[np.clip(src, 0, None)], split.n_items)


def trim_padding(history: torch.Tensor, padding_value: int, *more: torch.Tensor) -> torch.Tensor:
    """Drop the leading columns that are padding in every row of a left-padded batch.

    Exact for both models: positions count from the right, so extra left padding never changes an
    output. On shop logs (~9 interactions per user, history_len 50) most of a batch is padding, and
    the transformer's cost is quadratic in the columns it keeps. `more` tensors (e.g. the targets of
    the same windows) are cut alike; with them a tuple is returned.
    """
    real = (history != padding_value).any(0)  # (L,)
    first = int(real.to(torch.int8).argmax()) if bool(real.any()) else history.shape[1] - 1
    if not more:
        return history[:, first:]
    return (history[:, first:], *(t[:, first:] for t in more))  # type: ignore[return-value]


def length_bucketed_order(
    lengths: np.ndarray, batch_size: int, pool_batches: int = 64
) -> Callable[[np.random.Generator], np.ndarray]:
    """An epoch order whose batches hold examples of similar length, so `trim_padding` cuts them short.

    Each epoch: shuffle, cut into pools of `pool_batches` batches, sort each pool by length, cut it
    into batches, shuffle the batches (a short final batch stays last, so batch boundaries stay at
    multiples of batch_size). Every example is still seen once per epoch in a random batch order;
    on shop logs (median 3 pairs per window, a few of 50) a batch then costs a fraction of a uniform one.
    """
    lengths = np.asarray(lengths)

    def order(rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(len(lengths))
        pool = batch_size * pool_batches
        batches = []
        for lo in range(0, len(perm), pool):
            chunk = perm[lo : lo + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        short = [b for b in batches if len(b) < batch_size]
        picked = [full[i] for i in rng.permutation(len(full))] + short
        return np.concatenate(picked) if picked else perm

    return order


# ---- evaluation helpers -----------------------------------------------------------------------
def teacher_score_fn(model: Teacher) -> ScoreFn:
    """Scores for training.evaluate.ranking.evaluate: users beyond the table map to the OOV row."""

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            items = model.item_vectors()
            dev = items.device
            u = torch.as_tensor(
                np.where(users < model.n_users, users, model.oov_user), dtype=torch.long, device=dev
            )
            hist = trim_padding(torch.as_tensor(histories, dtype=torch.long, device=dev), model.padding_value)
            vec = model.query_vectors(u if model.takes_user_id else None, hist)
            return (vec.to(dev) @ items.T).cpu().numpy()

    return score


def student_score_fn(model: torch.nn.Module) -> ScoreFn:
    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            dev = next(model.parameters()).device
            vec = model.user_vectors(
                trim_padding(torch.as_tensor(histories, dtype=torch.long, device=dev), model.padding_value)
            )
            return (vec @ model.item_vectors().T).cpu().numpy()

    return score


def validation_split(split: Split, max_users: int | None, seed: int) -> Split:
    """The split with at most `max_users` (seeded sample) validation users: early stopping stays cheap."""
    if max_users is None or len(split.valid_users) <= max_users:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(split.valid_users), max_users, replace=False))
    return split.evaluated_rows(keep)


def save_checkpoint(payload: dict, path: Path) -> None:
    """torch.save to a temp file then rename: a crash never leaves a half-written checkpoint."""
    if not distributed.is_main():  # torchrun: rank 0 writes; the others wait until the file is there
        distributed.barrier()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    distributed.barrier()  # no-op in a single process


def set_threads(cfg: PipelineConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def sparse_tables(
    stage: TeacherConfig | StudentConfig, sampled: bool, tables: list[torch.nn.Embedding]
) -> bool:
    """Switch the id tables to sparse gradients when the stage asks (None: with a sampled loss, 1 process).

    A dense AdamW step reads and writes every row of every table; with a sampled softmax a batch
    touches a few thousand rows, so lazy Adam (`make_optimizers`) does the same work in a fraction.
    """
    on = stage.sparse_embeddings
    if on is None:
        on = sampled and distributed.world_size() == 1
    for table in tables:
        table.sparse = bool(on)
    return bool(on)


def make_optimizers(model: torch.nn.Module, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """AdamW for dense parameters, SparseAdam (no weight decay) for tables with sparse gradients."""
    sparse = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids]
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=lr))
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
    `batch_size` at a time (e.g. `length_bucketed_order`). With `average_halflife_epochs`, each
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
    distributed helper is an identity or a no-op (training/fit/distributed.py).
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
            range(0, n_examples, batch_size),
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
def negative_proposal(split: Split, smoothing: float = 0.1) -> torch.Tensor:
    """float32 [N]: popularity mixed with a little uniform mass so tail items are sampled too."""
    pop = split.item_popularity()
    q = (1 - smoothing) * pop / max(pop.sum(), 1.0) + smoothing / split.n_items
    return torch.as_tensor(q, dtype=torch.float32)


def sampled_hard_loss(
    vec: torch.Tensor,
    tgt: torch.Tensor,
    item_vectors_of: Callable[[torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    log_q: torch.Tensor,
    n_negatives: int,
    gen: torch.Generator,
    logq_correction: bool = True,
) -> torch.Tensor:
    """Sampled softmax of the targets against `n_negatives` items drawn from the proposal q.

    The hard-label loss of teacher and student on large catalogs: only the target and negative rows
    go through `item_vectors_of`, never the whole catalog. vec (P, D), tgt (P,), log_q = q.log().
    """
    neg = torch.multinomial(q, min(n_negatives, len(q)), replacement=True, generator=gen)  # (S,)
    items = item_vectors_of(torch.cat([tgt, neg]))
    pos_logit = (vec * items[: len(tgt)]).sum(-1)
    neg_logits = vec @ items[len(tgt) :].T  # (P, S)
    if not logq_correction:
        return sampled_softmax_loss(
            pos_logit, neg_logits, torch.zeros_like(pos_logit), torch.zeros(len(neg), device=vec.device)
        )
    return sampled_softmax_loss(pos_logit, neg_logits, log_q[tgt], log_q[neg], neg[None] == tgt[:, None])


def teacher_for(split: Split, catalog: Catalog, tc: TeacherConfig) -> TwoTowerTeacher:
    """A fresh teacher over the catalog's category, price and attribute features."""
    indptr, index = catalog.attribute_rows()
    n_attributes = len(catalog.attributes)
    attrs = attribute_table(indptr, index, n_attributes)
    return TwoTowerTeacher(split.n_users, catalog.category, catalog.price, tc, attrs, n_attributes)


def use_full_softmax(cfg: PipelineConfig, n_items: int) -> bool:
    t = cfg.teacher
    return t.loss == "full" or (t.loss == "auto" and n_items <= t.full_softmax_max_items)


def fit_teacher(
    split: Split, catalog: Catalog, cfg: PipelineConfig, work_dir: Path, progress: bool = True
) -> FitResult:
    """Train the two-tower teacher on every next-item pair; early stopping on validation NDCG@k."""
    set_threads(cfg)
    torch.manual_seed(cfg.seed)
    tc = cfg.teacher
    device = distributed.current(cfg.device).device
    model = teacher_for(split, catalog, tc).to(device)
    pairs = build_pairs(split, tc.history_len)
    if pairs.n_windows == 0:
        raise ValueError("the train split has no (history -> next item) pair: every user has one interaction")
    users, inputs, targets = window_tensors(split, pairs, tc.history_len)
    full = use_full_softmax(cfg, split.n_items)
    sparse = sparse_tables(tc, not full, model.id_tables())
    q = negative_proposal(split, tc.negative_smoothing).to(device)
    log_q = q.log()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    log.info(
        "teacher: %d pairs in %d windows, %s softmax, %s embedding gradients",
        len(pairs.user),
        pairs.n_windows,
        "full" if full else "sampled",
        "sparse" if sparse else "dense",
    )

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        i = torch.from_numpy(idx)
        x, y = trim_padding(inputs[i], model.padding_value, targets[i])
        u, x, y = users[i].to(device), x.to(device), y.to(device)
        if tc.use_user_id and tc.user_dropout > 0:  # train the OOV row: unknown users get a real vector
            drop = torch.rand(len(u), generator=gen, device=device) < tc.user_dropout
            u = torch.where(drop, model.oov_user, u)
        seq = model.sequence_vectors(u, x)  # (B, L, D)
        has = y >= 0
        vec, tgt = seq[has], y[has]  # (P, D), (P,)
        if full:
            return hard_label_loss(vec @ model.item_vectors().T, tgt)
        return sampled_hard_loss(
            vec, tgt, model.item_vectors_of, q, log_q, tc.n_negatives, gen, logq_correction=tc.logq_correction
        )

    return fit_stage(
        model, pairs.n_windows, batch_loss, teacher_score_fn(model), split, tc, cfg,
        checkpoint=lambda m: teacher_checkpoint(m, catalog.category, catalog.price),
        path=Path(work_dir) / "teacher.pt", desc="teacher", progress=progress,
        order_fn=length_bucketed_order((targets >= 0).sum(1).numpy(), tc.batch_size) if tc.bucket_by_length else None,
    )  # fmt: skip
