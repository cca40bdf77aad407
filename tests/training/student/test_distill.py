"""training/student/distill.py: the student's fit, with and without soft labels, and tiny fits that must beat popularity."""

import dataclasses

import numpy as np
import pytest

from tests.fixtures.cycle import cycle_log, tiny_cfg
from training.data.split import leave_last_out
from training.evaluate.ranking import evaluate
from training.evaluate.scoring import student_score_fn, teacher_score_fn
from training.student.distill import fit_student
from training.student.soft_labels import build_soft_labels
from training.teacher.fit import fit_teacher


def test_fit_teacher_and_students_beat_popularity(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    pop = split.item_popularity()
    pop_ndcg = evaluate(lambda u, h: np.tile(pop, (len(u), 1)), split, "valid", 5)["ndcg@10"]

    teacher = fit_teacher(split, log.catalog, cfg, tmp_path, progress=False)
    assert teacher.checkpoint.is_file() and not teacher.model.training
    t_ndcg = evaluate(teacher_score_fn(teacher.model), split, "valid", 5)["ndcg@10"]
    assert t_ndcg == pytest.approx(teacher.valid_metrics["ndcg@10"])
    assert t_ndcg > pop_ndcg + 0.3
    assert [row["epoch"] for row in teacher.curve] == list(range(1, len(teacher.curve) + 1))

    soft = build_soft_labels(teacher.model, split, cfg, tmp_path / "cache", "k" * 64, progress=False)
    student = fit_student(split, cfg, soft, tmp_path, progress=False)
    scratch = fit_student(split, cfg, None, tmp_path, progress=False)
    assert student.checkpoint.name == "student.pt" and scratch.checkpoint.name == "scratch.pt"
    assert student.valid_metrics["ndcg@10"] > pop_ndcg + 0.3
    assert scratch.valid_metrics["ndcg@10"] > pop_ndcg + 0.3
    got = evaluate(student_score_fn(student.model), split, "valid", 5)["ndcg@10"]
    assert got == pytest.approx(student.valid_metrics["ndcg@10"])


def test_time_budget_stops_training(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.student.max_train_seconds = 0.0  # stop after the first batch, still validated and saved
    result = fit_student(split, cfg, None, tmp_path, progress=False)
    assert len(result.curve) == 1 and result.checkpoint.is_file()


def test_fit_student_distils_on_whole_histories_too(small_teacher, tmp_path):
    teacher, split, cfg = small_teacher
    soft = build_soft_labels(teacher, split, cfg, tmp_path, "e" * 64, progress=False)
    cfg.distill.final_history_repeats = 2
    cfg.distill.rank_loss = "softmax"
    cfg.student.epochs = 1
    result = fit_student(split, cfg, soft, tmp_path, progress=False)
    assert np.isfinite(result.curve[0]["loss"])


def test_fit_student_refuses_soft_labels_of_another_split(small_teacher, tmp_path):
    teacher, split, cfg = small_teacher
    soft = build_soft_labels(teacher, split, cfg, tmp_path, "d" * 64, progress=False)
    short = dataclasses.replace(soft, n_pairs=soft.n_pairs - 1)
    with pytest.raises(ValueError, match="another split"):
        fit_student(split, cfg, short, tmp_path, progress=False)
