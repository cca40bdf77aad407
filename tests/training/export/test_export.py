"""ONNX export, parity and atomic publish, on small stand-in models with the teacher/student interface."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from core.manifest import (
    HISTORY_INPUT,
    INDICES_OUTPUT,
    K_INPUT,
    SCORES_OUTPUT,
    USER_INPUT,
    USER_VECTOR_OUTPUT,
    DatasetInfo,
    Manifest,
    ManifestError,
    load_manifest,
    read_latest,
    verify_files,
    write_latest,
)
from training.export import graphs, parity, publish, version

N_ITEMS, N_USERS, L = 30, 7, 6


class StubStudent(nn.Module):
    """Masked-mean MLP student: the interface of training.student.model.MLPStudent."""

    def __init__(self, n_items: int = N_ITEMS, dim: int = 8, history_len: int = L):
        super().__init__()
        self.n_items, self.history_len, self.padding_value = n_items, history_len, n_items
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.mlp = nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, dim))
        self.items = nn.Parameter(torch.randn(n_items, dim))

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        keep = (history != self.padding_value).float().unsqueeze(-1)  # (B, L, 1)
        mean = (self.emb(history) * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, d)
        return self.mlp(mean)

    forward = user_vectors

    def item_vectors(self) -> torch.Tensor:
        return self.items


class StubTeacher(StubStudent):
    """Adds a user-id table with an OOV row, like training.teacher.two_tower.TwoTowerTeacher."""

    def __init__(self, n_users: int = N_USERS, **kw):
        super().__init__(**kw)
        self.n_users, self.oov_user = n_users, n_users
        self.takes_user_id = (
            True  # the query graph reads a user index (training.export.graphs.has_user_input)
        )
        self.takes_history, self.known_users, self.dim = True, None, self.items.shape[1]
        self.user_emb = nn.Embedding(n_users + 1, self.items.shape[1])

    def user_vectors(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().user_vectors(history) + self.user_emb(user)

    query_vectors = user_vectors  # training.teacher.protocol.Teacher

    forward = user_vectors


def _models() -> tuple[StubStudent, StubTeacher]:
    torch.manual_seed(0)
    return StubStudent().eval(), StubTeacher().eval()


def test_exported_graphs_follow_the_manifest_contract(tmp_path: Path) -> None:
    student, teacher = _models()
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
    student, _ = _models()
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


def test_parity_passes_and_tops_up_small_datasets_to_n_rows(tmp_path: Path) -> None:
    _, teacher = _models()
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
    student, _ = _models()
    card = version.export_side(student, "student", tmp_path, opset=17, parameters=1)
    with torch.no_grad():
        student.items.mul_(-1.0)  # the model drifts after export: the graph is now wrong
    inputs = parity.parity_inputs(np.zeros((0, L), np.int64), np.zeros(0), 1, N_ITEMS, n_rows=50, seed=0)
    with pytest.raises(graphs.ParityError, match="student ONNX parity failed on 50 rows"):
        parity.check_parity(student, "student", card, tmp_path, inputs, k=5, atol=1e-4)


# --- publish ----------------------------------------------------------------------------------------


def _manifest(stage: Path, student: nn.Module, teacher: nn.Module) -> Manifest:
    s = version.export_side(student, "student", stage, opset=17, parameters=1)
    t = version.export_side(teacher, "teacher", stage, opset=17, parameters=2)
    np.save(stage / "items.npy", np.array([f"i{i}" for i in range(N_ITEMS)]))
    np.save(stage / "users.npy", np.array([f"u{i}" for i in range(N_USERS)]))
    np.save(stage / "item_category.npy", np.zeros(N_ITEMS, np.int32))
    (stage / "categories.json").write_text(json.dumps(["c"]))
    np.save(stage / "item_price.npy", np.ones(N_ITEMS, np.float32))
    np.save(stage / "popularity.npy", np.ones(N_ITEMS))
    np.savez(
        stage / "seed_interactions.npz",
        user=np.zeros(1, np.int64),
        item=np.zeros(1, np.int64),
        timestamp=np.zeros(1, np.int64),
    )
    np.savez(stage / "holdout.npz", user=np.zeros(1, np.int64), item=np.zeros(1, np.int64))
    return Manifest(
        version="placeholder",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        dataset=DatasetInfo(name="stub", fingerprint="f", n_users=N_USERS, n_items=N_ITEMS, n_interactions=1),
        config={},
        files={},
        student=s,
        teacher=t,
    )


def test_new_version_sorts_by_time() -> None:
    early = publish.new_version("fp", "{}", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = publish.new_version("fp", "{}", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("20260102T030405Z-") and len(early) == len("20260102T030405Z-") + 8
    assert early < late


def test_publish_writes_a_verified_version_and_latest(tmp_path: Path) -> None:
    student, teacher = _models()
    final = publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    assert final == tmp_path / "v1" and read_latest(tmp_path) == "v1"
    manifest = load_manifest(final)
    verify_files(final, manifest)
    assert manifest.version == "v1"
    assert {"student_topk.onnx", "teacher_user.onnx", "holdout.npz"} <= set(manifest.files)
    assert not list(tmp_path.glob(".staging-*"))
    with pytest.raises(publish.PublishError, match="already exists"):
        publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))


def test_failed_parity_publishes_nothing_and_keeps_latest(tmp_path: Path) -> None:
    student, teacher = _models()
    publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    before = sorted(p.name for p in tmp_path.iterdir())

    def build_and_fail(stage: Path) -> Manifest:
        _manifest(stage, student, teacher)  # everything staged, then the check fails
        raise graphs.ParityError("forced")

    with pytest.raises(graphs.ParityError):
        publish.publish(tmp_path, "v2", build_and_fail)
    assert read_latest(tmp_path) == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no v2, no .staging-v2


def test_a_staged_file_that_changes_after_listing_is_refused(tmp_path: Path, monkeypatch) -> None:
    """verify_files runs on the staged version before the rename: a corrupt stage never goes live."""
    student, teacher = _models()
    write_latest(tmp_path, "v0")
    real_list = publish.list_files

    def list_then_corrupt(folder: Path):
        entries = real_list(folder)
        (folder / "popularity.npy").write_bytes(b"corrupt")
        return entries

    monkeypatch.setattr(publish, "list_files", list_then_corrupt)
    with pytest.raises(ManifestError, match="popularity.npy"):
        publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    assert read_latest(tmp_path) == "v0" and not (tmp_path / "v1").exists()
    assert not list(tmp_path.glob(".staging-*"))


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
