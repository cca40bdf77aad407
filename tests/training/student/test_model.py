"""training/student/model.py: shapes, padding invariance, and a history read in order."""

import torch

from tests.fixtures.torch_models import tiny_student


def test_student_shapes_and_padding():
    s = tiny_student()
    assert (s.n_items, s.history_len, s.padding_value) == (12, 6, 12)
    short = s.user_vectors(torch.tensor([[4, 9, 2]]))
    padded = s(torch.tensor([[12, 12, 12, 4, 9, 2]]))
    assert short.shape == (1, 8) and s.item_vectors().shape == (12, 8)
    assert torch.allclose(short, padded, atol=1e-6)
    assert torch.isfinite(s.user_vectors(torch.full((2, 6), 12))).all()


def test_student_is_order_aware():
    s = tiny_student()
    with torch.no_grad():
        s.pos_logit.copy_(torch.linspace(2.0, -2.0, 6))  # recent items weigh more
    a = s.user_vectors(torch.tensor([[1, 2, 3]]))
    b = s.user_vectors(torch.tensor([[3, 2, 1]]))
    assert not torch.allclose(a, b, atol=1e-4)
