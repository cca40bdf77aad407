"""training/export/parity.py: the exported graphs against PyTorch on every row, topped up to n rows; a drifted model fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures.export_stubs import N_ITEMS, N_USERS, L, stub_models
from training.export import graphs, parity, version


def test_parity_passes_and_tops_up_small_datasets_to_n_rows(tmp_path: Path) -> None:
    _, teacher = stub_models()
    card = version.export_side(teacher, "teacher", tmp_path, opset=17, parameters=1)
    real = np.full((3, L), N_ITEMS, np.int64)
    real[:, -1] = [0, 1, 2]
    inputs = parity.parity_inputs(real, np.arange(3), N_USERS, N_ITEMS, n_rows=1000, seed=0)
    assert inputs.histories.shape == (1000, L) and inputs.users.shape == (1000,)
    np.testing.assert_array_equal(inputs.histories[:3], real)  # real users first
    assert inputs.users.max() <= N_USERS  # the OOV row may appear, nothing beyond it
    assert (inputs.histories == N_ITEMS).all(axis=1).any()  # empty histories are checked too
    result = parity.check_parity(teacher, "teacher", card, tmp_path, inputs, k=10, atol=1e-4)
    assert result["passed"] and result["rows"] == 1000 and result["mismatched_rows"] == 0
    assert result["max_abs_score_diff"] <= 1e-4


def test_parity_fails_on_a_graph_that_differs_from_the_model(tmp_path: Path) -> None:
    student, _ = stub_models()
    card = version.export_side(student, "student", tmp_path, opset=17, parameters=1)
    with torch.no_grad():
        student.items.mul_(-1.0)  # the model drifts after export: the graph is now wrong
    inputs = parity.parity_inputs(np.zeros((0, L), np.int64), np.zeros(0), 1, N_ITEMS, n_rows=50, seed=0)
    with pytest.raises(graphs.ParityError, match="student ONNX parity failed on 50 rows"):
        parity.check_parity(student, "student", card, tmp_path, inputs, k=5, atol=1e-4)
