"""`publish.refit`: the published student is the evaluated one fine-tuned on the whole log; the
report's figures stay the evaluated student's, and it says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.config_file import load_config
from training.data.split import leave_last_out
from training.pipeline import load_data, run_pipeline
from training.student.model import load_student
from training.student.refit import refit_config, whole_log_split

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"


def test_the_whole_log_split_trains_on_every_interaction_and_evaluates_no_one(tmp_path: Path) -> None:
    cfg = load_config(TINY, [f"work_dir={tmp_path}"])
    data, split = load_data(cfg)
    whole = whole_log_split(data)
    assert len(whole.train_items) == len(data) and len(whole.test_users) == 0
    assert len(split.train_items) + 2 * len(split.test_users) == len(data)  # what the holdout kept out
    standard = leave_last_out(data, 3)
    user = int(standard.test_users[0])  # the test item is the user's last train item now
    assert whole.history(user)[-1] == standard.test_items[0]
    refit = refit_config(cfg)
    assert (refit.student.epochs, refit.student.lr) == (1, cfg.student.lr * cfg.publish.refit_lr_scale)


def test_the_published_student_is_the_refit_one_and_the_report_says_whose_figures_it_gives(
    tmp_path: Path,
) -> None:
    cfg = load_config(TINY, [f"models_dir={tmp_path / 'm'}", f"work_dir={tmp_path / 'w'}",
                             "eval.peers=['popularity']", "publish.refit=true",
                             "student.popularity_penalties=[0.001, 0.002]"])  # fmt: skip
    result = run_pipeline(cfg, progress=False)
    assert result is not None
    evaluated = load_student(tmp_path / "w" / "student.pt")  # the weights the figures belong to
    published = np.load(result.version_dir / "student_item_vectors.npy")
    assert not np.allclose(published, evaluated.item_vectors().detach().numpy())
    refit = load_student(result.version_dir / "checkpoints" / "student.pt")
    assert np.allclose(published, refit.item_vectors().detach().numpy(), atol=1e-6)
    assert evaluated.score_bias is not None and refit.score_bias is not None  # the calibration is carried
    assert torch.equal(refit.score_bias, evaluated.score_bias)
    assert result.manifest.parity["student"]["passed"] and result.seconds["refit"] > 0
    assert "refit on the whole log (1 epoch(s)" in (result.version_dir / "report.md").read_text()
