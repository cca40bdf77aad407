"""training/teacher/two_tower.py: shapes, padding invariance, causality, features, parameter counts."""

import numpy as np
import pytest
import torch

from tests.fixtures.torch_models import CATEGORY, N_ITEMS, N_USERS, PRICE, tiny_teacher
from training.config import StudentConfig, TeacherConfig
from training.student.model import MLPStudent, count_parameters
from training.teacher.two_tower import TwoTowerTeacher, load_teacher, price_features, teacher_checkpoint
from training.workdir import save_checkpoint


def test_teacher_shapes_and_attributes():
    t = tiny_teacher()
    assert (t.n_users, t.n_items, t.history_len, t.padding_value, t.oov_user) == (7, 12, 6, 12, 7)
    hist = torch.tensor([[12, 12, 12, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    u = t.user_vectors(torch.tensor([0, 7]), hist)  # user 7 is the OOV row
    assert u.shape == (2, 16) and t.item_vectors().shape == (12, 16)
    assert torch.equal(t(torch.tensor([0, 7]), hist), u)
    # unit item vectors; user vectors have norm 1 / temperature
    assert torch.allclose(t.item_vectors().norm(dim=1), torch.ones(12), atol=1e-5)
    assert torch.allclose(u.norm(dim=1), torch.full((2,), 1 / t.temperature), atol=1e-3)


def test_teacher_padding_does_not_change_output():
    t = tiny_teacher()
    user = torch.tensor([3])
    short = t.user_vectors(user, torch.tensor([[4, 9, 2]]))
    padded = t.user_vectors(user, torch.tensor([[12, 12, 12, 4, 9, 2]]))
    assert torch.allclose(short, padded, atol=1e-5)
    other = t.user_vectors(user, torch.tensor([[12, 12, 12, 4, 9, 3]]))
    assert not torch.allclose(padded, other, atol=1e-3)  # the history is actually used


def test_teacher_empty_history_is_finite():
    t = tiny_teacher()
    u = t.user_vectors(torch.tensor([1]), torch.full((1, 6), 12))
    assert torch.isfinite(u).all()


def test_teacher_sequence_vectors_are_causal():
    t = tiny_teacher()
    user = torch.tensor([2])
    a = t.sequence_vectors(user, torch.tensor([[12, 1, 2, 3, 4, 5]]))
    b = t.sequence_vectors(user, torch.tensor([[12, 1, 2, 3, 9, 9]]))
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)  # later items never leak backwards
    assert not torch.allclose(a[:, 5], b[:, 5], atol=1e-3)


def test_price_features_standardise_known_prices_and_flag_unknown():
    f = price_features(np.array([np.e - 1, np.nan, np.e**3 - 1], dtype=np.float32))
    # log1p = [1, ?, 3]: mean 2, std 1 -> [-1, 0, 1]; unknown flagged
    assert f[:, 0] == pytest.approx([-1.0, 0.0, 1.0], abs=1e-5)
    assert f[:, 1].tolist() == [0.0, 1.0, 0.0]


def test_parameter_counts_at_ml100k_sizes():
    # ml-100k: 943 users, 1682 items, 18 genres; defaults must give a >= 10x smaller student
    category = np.arange(1682, dtype=np.int32) % 18
    teacher = TwoTowerTeacher(943, category, np.full(1682, np.nan, np.float32), TeacherConfig())
    student = MLPStudent(1682, StudentConfig())
    assert count_parameters(teacher) >= 10 * count_parameters(student)
    # the student has no user table: its size does not depend on the number of users
    d = StudentConfig().dim
    assert count_parameters(student) < (1682 + 1) * d + 20_000


def test_attribute_table_pads_each_item_to_the_widest():
    from training.teacher.two_tower import attribute_table

    table = attribute_table(np.array([0, 2, 2, 3]), np.array([4, 1, 0]), n_attributes=5)
    np.testing.assert_array_equal(table, [[4, 1], [5, 5], [0, 5]])
    np.testing.assert_array_equal(attribute_table(np.zeros(3, np.int64), np.zeros(0), 0), [[0], [0]])


def test_teacher_item_vectors_use_the_mean_of_the_attribute_embeddings():
    torch.manual_seed(0)
    cfg = TeacherConfig(dim=8, n_heads=2, history_len=4, dropout=0.0)
    attrs = np.full((N_ITEMS, 2), 3, dtype=np.int64)  # 3 attributes; 3 = padding
    attrs[0] = [0, 1]
    attrs[1] = [1, 3]
    t = TwoTowerTeacher(N_USERS, CATEGORY, PRICE, cfg, attrs, n_attributes=3).eval()
    base = t.item_content_of(torch.tensor([0, 1]))
    with torch.no_grad():
        t.attr_emb.weight[0] += 1.0  # only item 0 has attribute 0, with weight 1/2 in its mean
    moved = t.item_content_of(torch.tensor([0, 1])) - base
    assert torch.allclose(moved[0], torch.full((8,), 0.5)) and torch.allclose(moved[1], torch.zeros(8))
    with pytest.raises(ValueError, match=r"item_attributes must lie in \[0, 3\]"):
        TwoTowerTeacher(N_USERS, CATEGORY, PRICE, cfg, attrs + 1, n_attributes=3)
    again = load_teacher_roundtrip(t)
    assert torch.allclose(again.item_vectors(), t.item_vectors())


def load_teacher_roundtrip(t: TwoTowerTeacher) -> TwoTowerTeacher:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.pt"
        save_checkpoint(teacher_checkpoint(t, CATEGORY, PRICE), path)
        return load_teacher(path)


def test_history_only_dot_teacher_ignores_the_user_and_has_no_user_table():
    t = tiny_teacher(use_user_id=False, score="dot")
    assert not t.takes_user_id and not hasattr(t, "user_emb")
    hist = torch.tensor([[12, 12, 3, 4, 5, 6]])
    assert torch.equal(t.user_vectors(None, hist), t.user_vectors(torch.tensor([5]), hist))
    # dot head: no unit norms, no temperature folded in
    assert not torch.allclose(t.item_vectors().norm(dim=1), torch.ones(N_ITEMS), atol=1e-2)
    again = load_teacher_roundtrip(t)
    assert torch.allclose(again.user_vectors(None, hist), t.user_vectors(None, hist), atol=1e-6)


def test_pooling_teacher_is_causal_padding_invariant_and_exports(tmp_path):
    from training.export import parity, version

    t = tiny_teacher(use_user_id=False, score="dot", encoder="pooling", tie_item_embeddings=False)
    hist = torch.tensor([[12, 12, 3, 4, 5, 6]])
    seq = t.sequence_vectors(None, hist)
    # position 3 (item 4) sees items 3 and 4 only: the same as a history that ends there
    assert torch.allclose(
        seq[0, 3], t.user_vectors(None, torch.tensor([[12, 12, 12, 12, 3, 4]]))[0], atol=1e-5
    )
    assert torch.allclose(t.user_vectors(None, torch.tensor([[3, 4, 5, 6]])), seq[:, -1], atol=1e-5)
    card = version.export_side(t, "teacher", tmp_path, opset=17, parameters=1)
    rng = np.random.default_rng(0)
    inputs = parity.parity_inputs(
        rng.integers(0, N_ITEMS + 1, (200, 6)), np.zeros(200, np.int64), N_USERS, N_ITEMS, 200, 0
    )
    assert parity.check_parity(t, "teacher", card, tmp_path, inputs, k=5, atol=1e-4)["passed"]


def test_tag_means_are_the_same_trained_and_exported(monkeypatch):
    """Training takes one embedding_bag for the tags' mean, the ONNX export a gather and a sum: the
    same values, an item without tags included (zeros)."""
    torch.manual_seed(0)
    cfg = TeacherConfig(dim=8, n_heads=2, history_len=4, dropout=0.0)
    attrs = np.full((N_ITEMS, 3), 4, dtype=np.int64)  # 4 attributes; 4 = padding
    attrs[0], attrs[1], attrs[2] = [0, 1, 2], [3, 4, 4], [1, 3, 4]
    t = TwoTowerTeacher(N_USERS, CATEGORY, PRICE, cfg, attrs, n_attributes=4).eval()
    ids = torch.tensor([[0, 1, 2], [5, 2, 0]])
    bag = t._tag_means(ids)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    gathered = t._tag_means(ids)
    torch.testing.assert_close(bag, gathered, rtol=0, atol=1e-6)
    w = t.attr_emb.weight
    torch.testing.assert_close(bag[0, 1], w[3], rtol=0, atol=1e-6)  # one real tag: its row
    torch.testing.assert_close(bag[0, 2], (w[1] + w[3]) / 2, rtol=0, atol=1e-6)
    assert torch.count_nonzero(bag[1, 0]) == 0  # item 5 has no tags
