"""Our two-tower teacher's fit: every next-item pair of the train split, the causal windows the
transformer reads, a full or sampled softmax (training/fit/softmax.py), early stopping on validation
NDCG@k (training/fit/loop.py). An imported teacher is not fitted: training/teacher/imported.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from training import distributed
from training.config import PipelineConfig, TeacherConfig
from training.data.types import Catalog, Split
from training.distributed import set_threads
from training.evaluate.scoring import teacher_score_fn
from training.fit.examples import build_pairs, length_bucketed_order, trim_padding, window_tensors
from training.fit.loop import FitResult, fit_stage
from training.fit.losses import hard_label_loss
from training.fit.softmax import negative_proposal, sampled_hard_loss, sparse_tables, uses_full_softmax
from training.teacher.two_tower import TwoTowerTeacher, attribute_table, teacher_checkpoint

log = logging.getLogger(__name__)


def teacher_for(split: Split, catalog: Catalog, tc: TeacherConfig) -> TwoTowerTeacher:
    """A fresh teacher over the catalog's category, price and attribute features."""
    indptr, index = catalog.attribute_rows()
    n_attributes = len(catalog.attributes)
    attrs = attribute_table(indptr, index, n_attributes)
    return TwoTowerTeacher(split.n_users, catalog.category, catalog.price, tc, attrs, n_attributes)


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
    full = uses_full_softmax(tc, split.n_items)
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
