"""training/export/graphs.py and version.py: the exported graphs follow the manifest's contract and match PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
)
from tests.fixtures.export_stubs import N_ITEMS, N_USERS, L, stub_models
from training.export import parity, version


def test_exported_graphs_follow_the_manifest_contract(tmp_path: Path) -> None:
    student, teacher = stub_models()
    card = version.export_side(teacher, "teacher", tmp_path, opset=17, parameters=123)
    assert card.oov_user == N_USERS and card.padding_value == N_ITEMS and card.history_len == L
    assert card.dim == 8 and card.parameters == 123
    topk = ort.InferenceSession(str(tmp_path / card.topk.file))
    assert [i.name for i in topk.get_inputs()] == [USER_INPUT, HISTORY_INPUT, K_INPUT]
    assert [o.name for o in topk.get_outputs()] == [SCORES_OUTPUT, INDICES_OUTPUT]
    user = ort.InferenceSession(str(tmp_path / card.user.file))
    assert [o.name for o in user.get_outputs()] == [USER_VECTOR_OUTPUT]
    assert set(card.topk.inputs) == {USER_INPUT, HISTORY_INPUT, K_INPUT}
    np.testing.assert_array_equal(
        np.load(tmp_path / card.item_vectors), student_items(teacher)
    )  # the .npy is the matrix used for scoring

    scard = version.export_side(student, "student", tmp_path, opset=17, parameters=1)
    assert scard.oov_user is None and USER_INPUT not in scard.topk.inputs
    onnx.checker.check_model(str(tmp_path / scard.topk.file))


def student_items(model: nn.Module) -> np.ndarray:
    return model.item_vectors().detach().numpy()


def test_topk_graph_matches_torch_with_dynamic_batch_and_length(tmp_path: Path) -> None:
    student, _ = stub_models()
    card = version.export_side(student, "student", tmp_path, opset=17, parameters=1)
    sess = ort.InferenceSession(str(tmp_path / card.topk.file))
    rng = np.random.default_rng(1)
    for batch, length in ((1, L), (5, 3), (9, 11)):  # lengths other than the traced one too
        hist = rng.integers(0, N_ITEMS + 1, size=(batch, length)).astype(np.int64)
        scores, idx = sess.run(None, {HISTORY_INPUT: hist, K_INPUT: np.array([4], np.int64)})
        with torch.no_grad():
            ref = (student.user_vectors(torch.from_numpy(hist)) @ student.item_vectors().T).numpy()
        ref_idx = np.argsort(-ref, axis=1)[:, :4]
        assert idx.shape == (batch, 4) and idx.dtype == np.int64
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, np.take_along_axis(ref, ref_idx, 1), atol=1e-5)


# --- publish ----------------------------------------------------------------------------------------


def test_a_history_only_teacher_exports_without_a_user_input(tmp_path: Path) -> None:
    from training.config import TeacherConfig
    from training.teacher.two_tower import TwoTowerTeacher

    torch.manual_seed(0)
    cfg = TeacherConfig(dim=8, n_heads=2, history_len=L, dropout=0.0, use_user_id=False, score="dot")
    attrs = np.random.default_rng(0).integers(0, 4, size=(N_ITEMS, 3))  # 3 = padding
    teacher = TwoTowerTeacher(N_USERS, np.zeros(N_ITEMS), np.ones(N_ITEMS), cfg, attrs, 3).eval()
    card = version.export_side(teacher, "teacher", tmp_path, opset=17, parameters=1)
    assert card.oov_user is None  # the service then feeds the history alone, as for the student
    topk = ort.InferenceSession(str(tmp_path / card.topk.file))
    assert [i.name for i in topk.get_inputs()] == [HISTORY_INPUT, K_INPUT]
    rng = np.random.default_rng(1)
    hist = rng.integers(0, N_ITEMS + 1, size=(300, L))
    inputs = parity.parity_inputs(hist, np.zeros(300, np.int64), N_USERS, N_ITEMS, 300, 0)
    assert parity.check_parity(teacher, "teacher", card, tmp_path, inputs, k=10, atol=1e-4)["passed"]
