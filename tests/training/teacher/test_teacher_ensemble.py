"""Soft labels from teacher + scratch student (`distill.soft_labels_from = "teacher+scratch"`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.files import sha256_file
from core.manifest import read_latest
from tests.fixtures.cycle import cycle_log, tiny_cfg
from training.config import ConfigError, PipelineConfig, StudentConfig
from training.config_file import load_config
from training.data.split import leave_last_out
from training.pipeline import run_pipeline
from training.student.model import MLPStudent
from training.student.soft_labels import build_soft_labels
from training.teacher.ensemble import TeacherPlusStudent
from training.teacher.fit import fit_teacher

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"


def test_the_sum_scores_what_the_two_models_score_together(tmp_path: Path) -> None:
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.teacher.epochs = 1
    teacher = fit_teacher(split, log.catalog, cfg, tmp_path, progress=False).model
    torch.manual_seed(0)
    student = MLPStudent(log.n_items, StudentConfig(dim=8, history_len=3, hidden=[16])).eval()
    both = TeacherPlusStudent(teacher, student)
    history, user = torch.tensor([[log.n_items, 1, 2, 3, 4], [5, 6, 7, 8, 9]]), torch.tensor([0, 1])
    with torch.no_grad():
        expected = teacher.query_vectors(user, history) @ teacher.item_vectors().T
        expected += student.user_vectors(history[:, -3:]) @ student.item_vectors().T  # its own 3 items
        got = both.query_vectors(user, history) @ both.item_vectors().T
    assert torch.allclose(got, expected, atol=1e-5)
    assert both.dim == teacher.dim + 8 and both.history_len == 5
    labels = build_soft_labels(both, split, cfg, tmp_path / "soft", "c" * 64, progress=False)
    row = labels.n_pairs  # user 0's whole train history, scored as served
    hist = torch.from_numpy(np.full((1, 5), log.n_items))
    items = split.train_items[split.train_indptr[0] : split.train_indptr[1]][-5:]
    hist[0, -len(items) :] = torch.from_numpy(items)
    with torch.no_grad():
        scores = (both.query_vectors(torch.tensor([0]), hist) @ both.item_vectors().T)[0].numpy()
    assert (
        labels.candidates[row, : cfg.distill.top_m].tolist()
        == np.argsort(-scores)[: cfg.distill.top_m].tolist()
    )


def test_a_student_of_another_catalog_is_refused(tmp_path: Path) -> None:
    log = cycle_log()
    cfg = tiny_cfg()
    cfg.teacher.epochs = 1
    teacher = fit_teacher(leave_last_out(log), log.catalog, cfg, tmp_path, progress=False).model
    with pytest.raises(ValueError, match="scores 7 items"):
        TeacherPlusStudent(teacher, MLPStudent(7, StudentConfig(dim=8)))


def test_teacher_plus_scratch_needs_the_scratch_student() -> None:
    with pytest.raises(ValueError, match="train_scratch"):
        PipelineConfig.model_validate(
            {"distill": {"soft_labels_from": "teacher+scratch", "train_scratch": False}}
        )
    with pytest.raises(ConfigError, match="soft_labels_from"):
        load_config(TINY, ["distill.soft_labels_from=scratch"])


def test_pipeline_trains_scratch_first_and_distils_from_the_sum(tmp_path: Path) -> None:
    cfg = load_config(
        TINY,
        [
            f"models_dir={tmp_path / 'models'}",
            f"work_dir={tmp_path / 'work'}",
            "distill.soft_labels_from=teacher+scratch",
        ],
    )
    result = run_pipeline(cfg, progress=False)
    assert read_latest(cfg.models_dir) == result.version_dir.name
    work = tmp_path / "work"
    assert (work / "scratch.json").stat().st_mtime < (work / "student.json").stat().st_mtime
    caches = [p.name for p in (work / "soft_labels").iterdir()]
    assert len(caches) == 1  # the sum's labels only: no teacher-only labels were computed
    assert not caches[0].startswith(sha256_file(work / "teacher.pt")[:16])  # keyed by both models
    assert result.seconds["soft_labels"] > 0
    report = json.loads((result.version_dir / "report.json").read_text())
    assert report["soft_labels_from"] == "teacher+scratch"
    markdown = (result.version_dir / "report.md").read_text()
    assert "the sum of the teacher's and the scratch student's logits" in markdown
    # the soft labels' source is ranked beside the student, on the same users, and is no teacher peer
    test = report["metrics"]["test"]
    assert set(test["teacher+scratch"]) == set(test["student"])
    assert test["teacher+scratch"]["users"] == test["student"]["users"] > 0
    assert "| teacher+scratch |" in markdown and "teacher+scratch" not in report["agreement"]
    teacher_row = markdown.index("| teacher |")
    assert teacher_row < markdown.index("| teacher+scratch |") < markdown.index("| student |")


def test_stage_commands_train_scratch_before_the_sums_soft_labels(tmp_path: Path, capsys) -> None:
    from recdistill.cli import main

    sets = ["--set", f"work_dir={tmp_path / 'work'}", "--set", "distill.soft_labels_from=teacher+scratch"]
    args = ["--config", str(TINY), *sets, "--no-progress"]
    assert main(["teacher", *args]) == 0
    assert main(["soft-labels", *args]) == 2
    err = capsys.readouterr().err
    assert "scratch.pt: no scratch student" in err and "recdistill student" in err and "Traceback" not in err
    assert main(["student", *args]) == 0
    capsys.readouterr()
    assert main(["soft-labels", *args]) == 0  # now from the cache the student stage filled
    assert "soft labels:" in capsys.readouterr().out
    assert len(list((tmp_path / "work" / "soft_labels").iterdir())) == 1
