"""The moving average of the weights: its decay, the swap for validation, and what the loop keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.fit.averaging import EpochAverage, ema_decay
from training.fit.loop import train_loop


def flat(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()


def test_the_decay_halves_the_weight_of_old_steps_after_the_half_life() -> None:
    decay = ema_decay(2.0, steps_per_epoch=5)
    assert decay**10 == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="must be > 0"):
        ema_decay(0.0, 5)


def test_applied_swaps_in_the_average_and_restores_the_raw_weights_exactly() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    average = EpochAverage(model, halflife_epochs=1.0, n_examples=4, batch_size=2)  # 2 steps per epoch
    d = average.decay
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update()  # the first update copies
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update()
    with average.applied():
        assert model.weight.item() == pytest.approx(d * 1.0 + (1 - d) * 3.0, rel=1e-6)
    assert model.weight.item() == 3.0


def test_the_loop_validates_and_keeps_the_averaged_weights_of_the_best_epoch() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    seen_in_batches: list[np.ndarray] = []
    seen_in_validation: list[np.ndarray] = []
    scripted = iter([0.1, 0.3, 0.2])  # epoch 2 is best; patience 1 stops after epoch 3

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        seen_in_batches.append(flat(model))
        i = torch.from_numpy(idx)
        return ((model(x[i]) - y[i]) ** 2).mean()

    def validate() -> dict[str, float]:
        seen_in_validation.append(flat(model))
        return {"m": next(scripted)}

    curve, best, _ = train_loop(
        model, 8, batch_loss, validate, metric="m", lr=0.1, weight_decay=0.0, batch_size=4, epochs=3,
        patience=1, max_seconds=None, seed=1, progress=False, desc="toy", average_halflife_epochs=0.5,
    )  # fmt: skip
    assert [row["epoch"] for row in curve] == [1, 2, 3] and best == {"m": 0.3}
    np.testing.assert_array_equal(flat(model), seen_in_validation[1])  # epoch 2's average is kept
    raw_after_epoch_2 = seen_in_batches[4]  # training resumes from the raw weights, not the average
    assert not np.allclose(raw_after_epoch_2, seen_in_validation[1])
    assert not np.allclose(seen_in_batches[3], seen_in_validation[0])  # epoch 1 too was the average
