"""bench/tag_means.py: both forms timed on a tiny teacher with tags, the report written (no time asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from bench.tag_means import FORMS, main
from tests.fixtures.torch_models import CATEGORY, N_ITEMS, N_USERS, PRICE
from training.config import TeacherConfig
from training.teacher.two_tower import TwoTowerTeacher, teacher_checkpoint
from training.workdir import save_checkpoint


def test_the_bench_times_both_forms_and_writes_json_and_markdown(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    attrs = np.full((N_ITEMS, 2), 3, dtype=np.int64)
    attrs[0], attrs[1] = [0, 1], [2, 3]
    cfg = TeacherConfig(dim=8, n_heads=2, history_len=50, dropout=0.0)
    teacher = TwoTowerTeacher(N_USERS, CATEGORY, PRICE, cfg, attrs, n_attributes=3)
    path = tmp_path / "teacher.pt"
    save_checkpoint(teacher_checkpoint(teacher, CATEGORY, PRICE), path)
    assert main(["--teacher", str(path), "--rounds", "2", "--steps", "1", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "tag_means.md")
    result = json.loads((tmp_path / "tag_means.json").read_text())
    for part in ("item_tower", "user_tower"):
        assert set(result["ms"][part]) == set(FORMS) and all(len(v) == 2 for v in result["ms"][part].values())
        m = result["median_ms"][part]
        assert result["ratio_bag_over_gather"][part] == m["embedding_bag"] / m["gather"]
    assert result["teacher"] == {"n_items": N_ITEMS, "tags_per_item_max": 2, "dim": 8}
    text = (tmp_path / "tag_means.md").read_text()
    assert "| item_tower |" in text and "up to 2 tags each" in text
