"""The shared training loop's helpers: padding trim, length-bucketed epochs, the wall-clock budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import training.pipeline as pipeline
from tests.fixtures.hand_made import hand_made_log
from training.config import PipelineConfig, StudentConfig
from training.data.split import leave_last_out
from training.fit.examples import length_bucketed_order, trim_padding
from training.fit.loop import FitResult
from training.pipeline import budgeted, students_pool
from training.student.model import MLPStudent

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


def test_budget_gives_the_teacher_its_share_and_the_students_the_rest_less_the_reserve():
    cfg = PipelineConfig.model_validate(
        {"budget_minutes": 10, "teacher_budget_share": 0.5, "budget_reserve_share": 0.1}
    )
    assert budgeted(cfg).teacher.max_train_seconds == pytest.approx(300.0)
    assert budgeted(cfg) is not cfg and cfg.teacher.max_train_seconds is None
    cfg.teacher.max_train_seconds = 60.0
    assert budgeted(cfg).teacher.max_train_seconds == pytest.approx(60.0)  # the stage's own cap is tighter
    assert students_pool(cfg, 340.0) == pytest.approx(200.0)  # 600 s * 0.9 - 340 s spent
    assert students_pool(cfg, 1000.0) == 0.0  # spent: one batch each
    no_budget = PipelineConfig()
    assert budgeted(no_budget) is no_budget and students_pool(no_budget, 10.0) is None


def test_students_share_the_pool_by_cost_and_pass_on_what_an_early_stop_saves(monkeypatch, tmp_path):
    """Pool 300 s: the distilled student (cost 2) may use 2/3 = 200 s; it stops after 50 s, so the
    scratch student (cost 1, the last) may use all of the 250 s left."""
    clock = {"now": 0.0}
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock["now"])
    caps: dict[str, float] = {}

    def fake_fit(split, cfg, labels, work, progress=True):
        name = "scratch" if labels is None else "student"
        caps[name] = cfg.student.max_train_seconds
        clock["now"] += 50.0
        return FitResult(model=None, checkpoint=work / f"{name}.pt", valid_metrics={}, curve=[], seconds=50.0)

    monkeypatch.setattr(pipeline, "fit_student", fake_fit)
    data = hand_made_log([0, 0, 0, 1, 1, 1], [0, 1, 2, 2, 1, 0], 2, 3)
    cfg = PipelineConfig.model_validate({"work_dir": str(tmp_path), "distill": {"train_scratch": True}})
    pipeline.train_students(
        cfg, data, leave_last_out(data), object(), object(), progress=False, pool_seconds=300.0
    )
    assert caps == {"student": pytest.approx(200.0), "scratch": pytest.approx(250.0)}
    cfg.student.max_train_seconds = 100.0  # the stage's own cap still wins
    pipeline.train_students(
        cfg, data, leave_last_out(data), object(), object(), progress=False, pool_seconds=300.0
    )
    assert caps == {"student": pytest.approx(100.0), "scratch": pytest.approx(100.0)}
    pipeline.train_students(cfg, data, leave_last_out(data), object(), object(), progress=False)  # no pool
    assert caps == {"student": 100.0, "scratch": 100.0}
