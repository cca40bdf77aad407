"""An exponential moving average of the weights (Polyak averaging), validated and kept in their place.

Why: on sparse shop logs the teacher's validation NDCG@10 rises for a few epochs and then falls as
the item tables memorise each user's handful of items; the peak is one sharp epoch, so which
weights early stopping keeps is partly luck. The average of the weights over the last epoch or so
sits in the flatter region around that peak. The training loop steps the raw weights as always;
`EpochAverage.applied()` swaps the average in for validation, and the loop keeps the averaged
weights when they are the best.

The average itself is torch's `AveragedModel` with its EMA update (torch.optim.swa_utils), stepped
after every optimiser step. Its half-life is given in epochs, so one setting means the same on a log
of 20k users and of 2M: decay = 0.5 ** (1 / (halflife_epochs * steps_per_epoch)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(halflife_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay whose half-life is `halflife_epochs` epochs of `steps_per_epoch` steps."""
    if halflife_epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(
            f"halflife_epochs ({halflife_epochs}) and steps_per_epoch ({steps_per_epoch}) must be > 0"
        )
    return 0.5 ** (1.0 / (halflife_epochs * steps_per_epoch))


class EpochAverage:
    """The EMA of `model`'s parameters; buffers are the model's own (none of ours change in training)."""

    def __init__(self, model: torch.nn.Module, halflife_epochs: float, n_examples: int, batch_size: int):
        self.model = model
        self.decay = ema_decay(halflife_epochs, math.ceil(n_examples / batch_size))
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay))

    def update(self) -> None:
        """After each optimiser step (the first call copies the weights)."""
        self.average.update_parameters(self.model)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged parameters in the model for the block's duration, the raw ones restored after."""
        params = list(self.model.parameters())
        raw = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, a in zip(params, self.average.module.parameters(), strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(params, raw, strict=True):
                    p.copy_(r)
