"""training/workdir.py: what a stage leaves for the next, written whole and read back checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.torch_models import CATEGORY, PRICE, tiny_student, tiny_teacher
from training.config import PipelineConfig
from training.fit.loop import FitResult
from training.student.model import load_student, student_checkpoint
from training.teacher.two_tower import load_teacher, teacher_checkpoint
from training.workdir import (
    REFUSED_FILE,
    StageError,
    fit_record,
    load_record,
    record_path,
    save_checkpoint,
    save_record,
    save_refused,
)


def _cfg(tmp_path: Path) -> PipelineConfig:
    return PipelineConfig.model_validate({"work_dir": str(tmp_path / "work")})


def _fit(checkpoint: Path, calibration: dict | None = None) -> FitResult:
    curve = [{"epoch": 1, "loss": 2.5, "seconds": 1.0, "ndcg@10": 0.25}]
    return FitResult(None, checkpoint, {"ndcg@10": 0.25}, curve, 1.5, calibration)  # type: ignore[arg-type]


def test_checkpoint_round_trips(tmp_path):
    t, s = tiny_teacher(), tiny_student()
    save_checkpoint(teacher_checkpoint(t, CATEGORY, PRICE), tmp_path / "t.pt")
    save_checkpoint(student_checkpoint(s), tmp_path / "s.pt")
    t2, s2 = load_teacher(tmp_path / "t.pt"), load_student(tmp_path / "s.pt")
    hist = torch.tensor([[12, 1, 2, 3, 4, 5]])
    assert torch.equal(t.user_vectors(torch.tensor([1]), hist), t2.user_vectors(torch.tensor([1]), hist))
    assert torch.equal(t.item_vectors(), t2.item_vectors())
    assert torch.equal(s.user_vectors(hist), s2.user_vectors(hist))
    with pytest.raises(ValueError, match="not a teacher checkpoint"):
        load_teacher(tmp_path / "s.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt", "t.pt"]  # no temp file left behind


def test_a_record_round_trips_with_the_fingerprint_of_its_data(tmp_path):
    cfg = _cfg(tmp_path)
    checkpoint = tmp_path / "work" / "sweep" / "T=2" / "student.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    saved = save_record(cfg, "sweep/T=2", _fit(checkpoint, {"chosen": 0.1}), "f" * 64)
    path = record_path(cfg, "sweep/T=2")
    assert path == tmp_path / "work" / "sweep" / "T=2.json"
    assert (
        json.loads(path.read_text())
        == saved
        == {
            "checkpoint": str(checkpoint),
            "fingerprint": "f" * 64,
            "valid_metrics": {"ndcg@10": 0.25},
            "curve": [{"epoch": 1, "loss": 2.5, "seconds": 1.0, "ndcg@10": 0.25}],
            "seconds": 1.5,
            "calibration": {"chosen": 0.1},
        }
    )
    assert load_record(cfg, "sweep/T=2", "f" * 64) == saved
    assert fit_record(_fit(checkpoint)) == {
        "valid_metrics": {"ndcg@10": 0.25},
        "curve": [{"epoch": 1, "loss": 2.5, "seconds": 1.0, "ndcg@10": 0.25}],
        "seconds": 1.5,
    }


def test_a_missing_stale_or_orphaned_record_is_a_stage_error_naming_what_to_retrain(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(
        StageError, match="teacher.json: not found; run the stage that trains 'teacher' first"
    ):
        load_record(cfg, "teacher", "a" * 64)
    checkpoint = tmp_path / "work" / "teacher.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    save_record(cfg, "teacher", _fit(checkpoint), "a" * 64)
    with pytest.raises(StageError, match="trained on other data .*retrain 'teacher'"):
        load_record(cfg, "teacher", "b" * 64)
    checkpoint.unlink()
    with pytest.raises(StageError, match="teacher.pt: checkpoint missing; retrain 'teacher'"):
        load_record(cfg, "teacher", "a" * 64)


def test_the_refused_record_replaces_the_last_one_whole(tmp_path):
    cfg = _cfg(tmp_path)
    save_refused(cfg, {"gates": {"status": "failed"}, "test": {"student": {"ndcg@10": 0.1}}})
    path = save_refused(cfg, {"gates": {"status": "failed"}, "test": {"student": {"ndcg@10": 0.2}}})
    assert path == tmp_path / "work" / REFUSED_FILE
    assert json.loads(path.read_text())["test"] == {"student": {"ndcg@10": 0.2}}
    assert [p.name for p in path.parent.iterdir()] == [REFUSED_FILE]
