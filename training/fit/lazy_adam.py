"""Lazy Adam for embedding tables with sparse gradients: torch's SparseAdam, its cost cut where it went.

The update is torch.optim.SparseAdam's (Kingma & Ba, "Adam", 2015, applied lazily: only the rows a
step looked up move, and only their moments decay): for the rows R of this step's gradient g
(duplicates summed),

    m[R] += (1 - b1) (g - m[R]);  v[R] += (1 - b2) (g^2 - v[R])
    w[R] -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m[R] / (sqrt(v[R]) + eps)

with t the table's step count. What differs is how it gets there. SparseAdam coalesces the gradient
(a sort of every looked-up index), then reads and writes the moments through `sparse_mask` and three
sparse additions. bench/profile_stages.py on Amazon Beauty found that `opt.step()` took 26% of the
distilled student's stage and that 76% of that was `grad.coalesce()`. A student step looks up
~40k rows of a 12k-row table (histories, distillation candidates, sampled negatives). Here, a table
with at most `MASK_ROWS_PER_LOOKUP` rows per looked-up index marks its rows in a boolean mask and
sums duplicates into a dense buffer of the table's shape, with no sort. Larger tables (a 1M-item catalogue, where a
step touches a few thousand rows) keep the sort through `torch.unique`. Either way the moments and
weights are read and written with one gather and one `index_put_` per tensor. The result equals
SparseAdam's up to the order in which duplicate rows are summed (tests/training/fit/test_lazy_adam.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

# A mask and a dense buffer of the table's shape (O(rows)) instead of a sort of the indices (O(nnz log
# nnz)): cheaper while the table is not much larger than a step's lookups (12k rows, 40k lookups of
# 16 floats, one thread of this machine: 1.6 ms vs coalesce's 2.9), dearer beyond (1M rows: 13.6 ms).
MASK_ROWS_PER_LOOKUP = 4


class LazyAdam(torch.optim.Optimizer):
    """torch.optim.SparseAdam's update (same arguments, same state names), for sparse gradients."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"LazyAdam: lr {lr} and eps {eps} must be > 0 and betas {betas} in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("LazyAdam takes sparse gradients only (nn.Embedding(sparse=True))")
                rows, grad = summed_rows(param.grad)
                if not len(rows):
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m_rows = m[rows].lerp_(grad, 1 - b1)  # m + (1 - b1)(g - m)
                v_rows = v[rows].lerp_(grad * grad, 1 - b2)
                m.index_put_((rows,), m_rows)
                v.index_put_((rows,), v_rows)
                step_size = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                update = m_rows.div_(v_rows.sqrt_().add_(group["eps"])).mul_(-step_size)
                param.index_add_(0, rows, update)  # rows are distinct: a plain add
        return loss


def summed_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows int64 [R] ascending, values [R, ...]): a sparse gradient's distinct rows, duplicates summed."""
    if grad.is_coalesced():
        return grad._indices()[0], grad._values()
    index, values = grad._indices()[0], grad._values()
    n_rows = grad.shape[0]
    if n_rows <= MASK_ROWS_PER_LOOKUP * max(len(index), 1):
        hit = torch.zeros(n_rows, dtype=torch.bool, device=index.device)  # the table's device (CPU or GPU)
        hit[index] = True
        rows = hit.nonzero().squeeze(1)
        dense = values.new_zeros((n_rows, *values.shape[1:]))
        # accumulate=True: 0.99 ms for 40k lookups of 16 floats, index_add_ / scatter_add_ 1.7 ms
        dense.index_put_((index,), values, accumulate=True)
        return rows, dense[rows]
    rows, position = torch.unique(index, return_inverse=True)
    summed = values.new_zeros((len(rows), *values.shape[1:]))
    summed.index_put_((position,), values, accumulate=True)
    return rows, summed
