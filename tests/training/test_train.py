"""The shared training loop's helpers: padding trim, length-bucketed epochs, the wall-clock budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import PipelineConfig, StudentConfig
from training.pipeline import budgeted
from training.student import MLPStudent
from training.train import length_bucketed_order, trim_padding

PAD = 9


def test_trim_padding_drops_only_columns_that_are_padding_in_every_row():
    x = torch.tensor([[PAD, PAD, PAD, 1, 2], [PAD, PAD, 3, 4, 5]])
    y = torch.tensor([[-1, -1, -1, 2, 7], [-1, -1, 4, 5, 8]])
    tx, ty = trim_padding(x, PAD, y)
    assert tx.tolist() == [[PAD, 1, 2], [3, 4, 5]] and ty.tolist() == [[-1, 2, 7], [4, 5, 8]]
    all_pad = torch.full((2, 4), PAD)
    assert trim_padding(all_pad, PAD).shape == (2, 1)  # one column kept: the model still gets an input


def test_trimmed_histories_give_the_students_exact_output():
    torch.manual_seed(0)
    model = MLPStudent(PAD, StudentConfig(dim=4, history_len=5, hidden=[8], dropout=0.0)).eval()
    x = torch.tensor([[PAD, PAD, PAD, 1, 2], [PAD, PAD, 3, 4, 5]])
    assert torch.allclose(model.user_vectors(x), model.user_vectors(trim_padding(x, PAD)), atol=1e-6)


def test_length_bucketed_order_is_a_permutation_of_similar_length_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    order = length_bucketed_order(lengths, batch_size=32, pool_batches=8)(np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))
    batches = [order[i : i + 32] for i in range(0, 1000, 32)]
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(1000)[:32]]) for _ in range(20)])
    assert len(batches[-1]) == 1000 % 32  # the one short batch comes last: boundaries stay aligned


def test_budget_splits_between_teacher_and_students():
    cfg = PipelineConfig.model_validate(
        {"budget_minutes": 10, "teacher_budget_share": 0.5, "budget_reserve_share": 0.1,
         "student": {"max_train_seconds": 60.0}, "distill": {"train_scratch": True}}
    )  # fmt: skip
    assert budgeted(cfg, "teacher", 0.0).teacher.max_train_seconds == pytest.approx(300.0)
    # 600 s * 0.9 - 340 s spent = 200 s for two students: 100 s each, capped by the stage's own 60 s
    assert budgeted(cfg, "students", 340.0).student.max_train_seconds == pytest.approx(60.0)
    cfg.student.max_train_seconds = None
    assert budgeted(cfg, "students", 340.0).student.max_train_seconds == pytest.approx(100.0)
    assert budgeted(cfg, "students", 1000.0).student.max_train_seconds == 0.0  # spent: one batch each
    assert budgeted(cfg, "teacher", 0.0) is not cfg and cfg.teacher.max_train_seconds is None
    no_budget = PipelineConfig()
    assert budgeted(no_budget, "teacher", 0.0) is no_budget
