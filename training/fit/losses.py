"""Pure loss functions, summed by configured weights in training/student/distill.py and training/teacher/fit.py.

Each takes logits (not probabilities) and returns a scalar mean over the batch. None of them
touches a model, so each is tested on tiny hand-computed tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_label_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the true next item: mean_b -log softmax(z_b)[y_b].

    logits: (B, C), target: (B,) column index. The standard next-item objective (e.g. Covington
    et al., RecSys 2016, "Deep Neural Networks for YouTube Recommendations").
    """
    return F.cross_entropy(logits, target)


def sampled_softmax_loss(
    pos_logit: torch.Tensor,
    neg_logits: torch.Tensor,
    log_q_pos: torch.Tensor,
    log_q_neg: torch.Tensor,
    accidental_hit: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax with logQ correction (Bengio & Senecal 2008; Yi et al., RecSys 2019).

    With negatives drawn from a proposal Q (here: popularity, as in-batch negatives are), every
    logit is corrected by subtracting log Q(item) before the softmax:
        loss_b = -log( exp(s_pos - log q_pos) / (exp(s_pos - log q_pos) + sum_j exp(s_j - log q_j)) ).
    Without the correction popular items are over-represented among the negatives, so the model
    learns to push them down too hard and its scores no longer rank by true relevance (HR@10 halved
    on ml-100k in the team's measurement). pos_logit: (B,), neg_logits: (B, S), log_q_pos: (B,),
    log_q_neg: (S,) or (B, S); accidental_hit: (B, S) bool, True where a negative is the positive.
    """
    neg = neg_logits - log_q_neg
    if accidental_hit is not None:
        neg = neg.masked_fill(accidental_hit, -1e9)
    logits = torch.cat([(pos_logit - log_q_pos)[:, None], neg], dim=1)  # (B, 1 + S)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def tempered_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

        L = T^2 * mean_b KL( softmax(t_b / T) || softmax(s_b / T) )
          = T^2 * mean_b sum_c p_c (log p_c - log q_c),   p = softmax(t/T), q = softmax(s/T).

    The T^2 factor keeps the gradient scale independent of T. Both inputs are (B, C) over the same
    candidate columns; -inf teacher logits (masked candidates) get p = 0 and contribute nothing.
    """
    log_p = torch.log_softmax(teacher_logits / temperature, dim=-1)
    log_q = torch.log_softmax(student_logits / temperature, dim=-1)
    p = log_p.exp()
    kl = (p * (log_p - log_q)).nan_to_num(0.0).sum(-1)  # 0 * (-inf) terms -> 0
    return temperature**2 * kl.mean()


def rank_weights(k: int, lam: float, device: torch.device | None = None) -> torch.Tensor:
    """Tang & Wang's position importance w_r = exp(-r / lambda), r = 1..K, normalised to sum to 1."""
    r = torch.arange(1, k + 1, dtype=torch.float32, device=device)
    w = torch.exp(-r / lam)
    return w / w.sum()


def ranking_distillation_loss(
    student_logits: torch.Tensor, top_k_cols: torch.Tensor, lam: float
) -> torch.Tensor:
    """Ranking distillation (Tang & Wang, KDD 2018, "Ranking Distillation", eq. 4-6).

    The teacher's top-K items are extra positives with rank-decaying weights:
        L = - mean_b sum_{r=1..K} w_r log sigmoid(s_{b, pi_r}),   w_r = exp(-r/lambda) / sum_r' exp(-r'/lambda)
    where pi_r is the teacher's r-th item (column index into the candidate logits). This is the
    paper's pointwise form with position importance weighting (their hybrid weighting also uses a
    ranking-discrepancy term; we keep the position term only). student_logits: (B, C),
    top_k_cols: (B, K) long.
    """
    k = top_k_cols.shape[1]
    w = rank_weights(k, lam, student_logits.device)  # (K,)
    picked = torch.gather(student_logits, 1, top_k_cols)  # (B, K)
    return -(F.logsigmoid(picked) * w).sum(-1).mean()


def ranking_distillation_softmax_loss(
    student_logits: torch.Tensor, top_k_cols: torch.Tensor, lam: float
) -> torch.Tensor:
    """Listwise variant of ranking distillation: the teacher's top-K as weighted softmax positives.

        L = - mean_b sum_{r=1..K} w_r log softmax(s_b)[pi_r]     (w_r as in `rank_weights`)
    Same weights as Tang & Wang, but each extra positive is scored against the whole candidate set,
    matching the softmax the student is trained with (the logistic form ignores the other candidates).
    """
    k = top_k_cols.shape[1]
    w = rank_weights(k, lam, student_logits.device)
    log_q = torch.log_softmax(student_logits, dim=-1)
    return -(torch.gather(log_q, 1, top_k_cols) * w).sum(-1).mean()
