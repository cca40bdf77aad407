"""The hard-label loss at any catalog size: the full softmax while the catalog is small, else a
sampled softmax with logQ correction over negatives drawn from a smoothed popularity proposal.

One rule for both stages (`uses_full_softmax`, set per stage by `loss` and `full_softmax_max_items`)
and one sampler, so the teacher and the student switch alike. The loss formulas themselves are pure
functions in training/fit/losses.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training import distributed
from training.config import StudentConfig, TeacherConfig
from training.data.types import Split
from training.fit.losses import sampled_softmax_loss


def uses_full_softmax(stage: TeacherConfig | StudentConfig, n_items: int) -> bool:
    """Whether a stage's hard-label loss is the softmax over the whole catalog: `loss = "full"`, or
    "auto" while the catalog has at most `full_softmax_max_items` items. Otherwise a sampled softmax
    (`sampled_hard_loss`): a [batch, n_items] logit matrix per step stops being affordable."""
    return stage.loss == "full" or (stage.loss == "auto" and n_items <= stage.full_softmax_max_items)


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
