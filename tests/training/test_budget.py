"""The wall-clock budget (training/schedule/budget.py, used by training/pipeline.py): the teacher's share,
and the students sharing what is left by cost."""

from __future__ import annotations

import pytest

import training.pipeline as pipeline
import training.student.stage as student_stage
from tests.fixtures.hand_made import hand_made_log
from training.config import PipelineConfig
from training.data.split import leave_last_out
from training.fit.loop import FitResult
from training.pipeline import budgeted, students_pool
from training.schedule.budget import scratch_share


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

    def fake_fit(split, cfg, labels, work, progress=True, init=None, trained=None):
        name = "scratch" if labels is None else "student"
        caps[name] = cfg.student.max_train_seconds
        clock["now"] += 50.0
        return FitResult(model=None, checkpoint=work / f"{name}.pt", valid_metrics={}, curve=[], seconds=50.0)

    monkeypatch.setattr(student_stage, "fit_student", fake_fit)
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


def test_a_scratch_student_beside_the_teacher_gets_its_part_as_if_the_teacher_used_its_whole_share():
    """Budget 10 min, teacher 50%, reserve 10%: after 20 s of data, the students' pool would be
    600 * 0.9 - 20 - 300 = 220 s; scratch (cost 1) beside a distilled student (cost 2): a third."""
    cfg = PipelineConfig.model_validate(
        {"budget_minutes": 10, "teacher_budget_share": 0.5, "budget_reserve_share": 0.1}
    )
    assert scratch_share(cfg, 20.0, [False, True]) == pytest.approx(220.0 / 3)
    assert scratch_share(cfg, 20.0, [False, True, True]) == pytest.approx(220.0 / 5)  # one swept student
    assert scratch_share(PipelineConfig(), 20.0, [False, True]) is None


def test_a_student_already_trained_beside_the_teacher_is_taken_and_the_rest_get_the_pool(
    monkeypatch, tmp_path
):
    """The scratch student came from the side process: only the distilled one trains, with the whole pool."""
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: 0.0)
    caps: dict[str, float] = {}

    def fake_fit(split, cfg, labels, work, progress=True, init=None, trained=None):
        name = "scratch" if labels is None else "student"
        caps[name] = cfg.student.max_train_seconds
        return FitResult(model=None, checkpoint=work / f"{name}.pt", valid_metrics={}, curve=[], seconds=1.0)

    monkeypatch.setattr(student_stage, "fit_student", fake_fit)
    data = hand_made_log([0, 0, 0, 1, 1, 1], [0, 1, 2, 2, 1, 0], 2, 3)
    cfg = PipelineConfig.model_validate({"work_dir": str(tmp_path), "distill": {"train_scratch": True}})
    beside = FitResult(
        model=None, checkpoint=tmp_path / "scratch.pt", valid_metrics={}, curve=[], seconds=9.0
    )
    fits = pipeline.train_students(
        cfg, data, leave_last_out(data), object(), object(), progress=False, pool_seconds=300.0,
        done={"scratch": beside},
    )  # fmt: skip
    assert caps == {"student": pytest.approx(300.0)}
    assert fits["scratch"] is beside and set(fits) == {"scratch", "student"}
