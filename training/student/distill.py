"""The student's fit: the hard label plus, with soft labels, the distillation terms.

The student is trained on the teacher's (history -> next item) pairs with
    weight_hard * CE(full catalog, true item)
  + weight_kl   * T^2 KL(teacher || student) over the candidates      (Hinton et al. 2015)
  + weight_rank * ranking distillation on the teacher's top-K          (Tang & Wang, KDD 2018)
With no soft labels or weight_kl = weight_rank = 0 it is the "scratch" baseline. Besides the labelled
pairs, `distill.final_history_repeats` adds each user's whole-history rows of the soft labels
(training/student/soft_labels.py), soft-label losses only, to every epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from training import distributed
from training.config import PipelineConfig
from training.data.types import Split
from training.distributed import set_threads
from training.evaluate.scoring import student_score_fn
from training.fit.examples import build_pairs, histories_before
from training.fit.loop import FitResult, fit_stage
from training.fit.losses import (
    hard_label_loss,
    ranking_distillation_loss,
    ranking_distillation_softmax_loss,
    tempered_kl_loss,
)
from training.fit.softmax import negative_proposal, sampled_hard_loss, sparse_tables, uses_full_softmax
from training.student.model import MLPStudent, student_checkpoint
from training.student.soft_labels import SoftLabels
from training.warm.replay import fresh_pairs, replay_order

log = logging.getLogger(__name__)


def distillation_active(cfg: PipelineConfig, soft_labels: SoftLabels | None) -> bool:
    return soft_labels is not None and (cfg.distill.weight_kl > 0 or cfg.distill.weight_rank > 0)


def fit_student(
    split: Split,
    cfg: PipelineConfig,
    soft_labels: SoftLabels | None,
    work_dir: Path,
    progress: bool = True,
    init: MLPStudent | None = None,
    trained: np.ndarray | None = None,
) -> FitResult:
    """Train the MLP student on every train pair; distil when soft labels and weights say so.

    `init`: the weights to start from (a warm start, training/warm/start.py); None: fresh ones.
    `trained`: per user, how many of their oldest interactions those weights were trained on; with
    `warm.replay` < 1 each epoch takes the other pairs and that share of these (training/warm/replay.py)."""
    set_threads(cfg)
    torch.manual_seed(cfg.seed)
    sc, d = cfg.student, cfg.distill
    device = distributed.current(cfg.device).device
    model = (init if init is not None else MLPStudent(split.n_items, sc)).to(device)
    pairs = build_pairs(split, sc.history_len)
    if len(pairs.user) == 0:
        raise ValueError("the train split has no (history -> next item) pair: every user has one interaction")
    distil = distillation_active(cfg, soft_labels)
    users, positions = pairs.user, pairs.pos
    rows = np.arange(len(pairs.user))  # example -> row of users/positions/targets (and soft labels)
    if distil:
        assert soft_labels is not None
        n = soft_labels.n_pairs
        if n != len(pairs.user) or not np.array_equal(soft_labels.pos[:n], pairs.pos):
            raise ValueError("soft labels were built for another split: rebuild them (build_soft_labels)")
        users, positions = soft_labels.user, soft_labels.pos
        finals = np.arange(n, len(soft_labels))  # whole-history rows: soft labels only
        rows = np.concatenate([rows, *([finals] * d.final_history_repeats)])
        cand_all = torch.from_numpy(soft_labels.candidates.astype(np.int64))
        teach_all = torch.from_numpy(soft_labels.logits)
        known_all = None if soft_labels.known is None else torch.from_numpy(soft_labels.known)
        top_k = min(d.rank_top_k, soft_labels.top_m)
    targets = np.full(len(users), -1, dtype=np.int64)  # -1: no hard label (whole-history rows)
    targets[: len(pairs.pos)] = split.train_items[pairs.pos]
    targets_t = torch.from_numpy(targets)
    rank_loss = ranking_distillation_loss if d.rank_loss == "logistic" else ranking_distillation_softmax_loss
    full = uses_full_softmax(sc, split.n_items)
    sparse_tables(sc, not full, [model.item_emb])
    q = negative_proposal(split).to(device)
    log_q = q.log()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def hard_loss(vec: torch.Tensor, tgt: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        """CE over the full catalog, or a sampled softmax with logQ correction (large catalogs)."""
        if logits is not None:
            return hard_label_loss(logits, tgt)
        return sampled_hard_loss(vec, tgt, model.item_vectors_of, q, log_q, sc.n_negatives, gen)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        r = rows[idx]
        hist = torch.from_numpy(histories_before(split, users[r], positions[r], sc.history_len)).to(device)
        vec = model.user_vectors(hist)  # (B, d)
        # (B, N) only while the catalog is small; otherwise candidates are scored one by one
        logits = vec @ model.item_vectors().T if full else None
        i = torch.from_numpy(r)
        tgt = targets_t[i].to(device)
        has = tgt >= 0
        loss = vec.sum() * 0.0
        if d.weight_hard > 0 and bool(has.any()):
            loss = loss + d.weight_hard * hard_loss(
                vec[has], tgt[has], None if logits is None else logits[has]
            )
        if distil:
            ok = torch.ones(len(i), dtype=torch.bool) if known_all is None else known_all[i]
            i, vec_d = i[ok], vec[ok.to(device)]
            cand = cand_all[i].to(device)  # (B, C)
            if logits is not None:
                s_cand = logits[ok.to(device)].gather(1, cand)
            else:
                s_cand = (vec_d[:, None, :] * model.item_vectors_of(cand)).sum(-1)
            if d.weight_kl > 0 and len(i):
                loss = loss + d.weight_kl * tempered_kl_loss(s_cand, teach_all[i].to(device), d.temperature)
            if d.weight_rank > 0 and len(i):
                cols = torch.arange(top_k, device=device).expand(len(i), top_k)
                loss = loss + d.weight_rank * rank_loss(s_cand, cols, d.rank_lambda)
        return loss

    order_fn = None
    if trained is not None and cfg.warm.replay < 1:
        fresh = np.ones(len(rows), dtype=bool)  # whole-history rows: always
        fresh[: len(pairs.user)] = fresh_pairs(split, pairs, trained)
        order_fn = replay_order(fresh, cfg.warm.replay)
        log.info(
            "%s: each epoch %d pairs the warm start never trained on + %.0f%% of its %d",
            "student" if distil else "scratch", fresh.sum(), 100 * cfg.warm.replay, (~fresh).sum(),
        )  # fmt: skip
    name = "student" if distil else "scratch"
    return fit_stage(
        model, len(rows), batch_loss, student_score_fn(model), split, sc, cfg,
        checkpoint=student_checkpoint, path=Path(work_dir) / f"{name}.pt", desc=name, progress=progress,
        order_fn=order_fn,
    )  # fmt: skip
