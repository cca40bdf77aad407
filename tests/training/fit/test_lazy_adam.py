"""LazyAdam against torch.optim.SparseAdam: the same weights and moments, step after step."""

from __future__ import annotations

import pytest
import torch

from training.fit.lazy_adam import LazyAdam, summed_rows


@pytest.mark.parametrize("n_rows", [50, 5_000])  # the mask path (rows <= 4 x lookups) and the sort path
def test_lazy_adam_moves_the_weights_as_sparse_adam_does(n_rows: int) -> None:
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Embedding(n_rows, 8, sparse=True) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    opt_ours = LazyAdam(ours.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    opt_theirs = torch.optim.SparseAdam(theirs.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    untouched = torch.arange(n_rows - 10, n_rows)  # never looked up: must never move
    start = ours.weight.detach().clone()
    for _ in range(6):
        index = torch.randint(0, n_rows - 10, (200,))  # duplicates in every step
        target = torch.randn(200, 8)
        for table, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            ((table(index) - target) ** 2).sum().backward()
            opt.step()
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
    for name in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt_ours.state[ours.weight][name], opt_theirs.state[theirs.weight][name])
    assert float(opt_ours.state[ours.weight]["step"]) == 6
    assert torch.equal(ours.weight[untouched], start[untouched])
    assert not torch.equal(ours.weight, start)


def test_duplicate_rows_are_summed_and_listed_once_in_order() -> None:
    grad = torch.sparse_coo_tensor(
        torch.tensor([[3, 1, 3, 7]]), torch.tensor([[1.0], [2.0], [4.0], [8.0]]), (10, 1)
    )
    for n_rows in (10, 1_000):  # both paths
        big = torch.sparse_coo_tensor(grad._indices(), grad._values(), (n_rows, 1))
        rows, values = summed_rows(big)
        assert rows.tolist() == [1, 3, 7]
        assert values.squeeze(1).tolist() == [2.0, 5.0, 8.0]
    rows, values = summed_rows(grad.coalesce())
    assert rows.tolist() == [1, 3, 7] and values.squeeze(1).tolist() == [2.0, 5.0, 8.0]


def test_a_dense_gradient_or_a_bad_setting_is_refused() -> None:
    table = torch.nn.Embedding(4, 2)  # dense gradients
    table(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients only"):
        LazyAdam(table.parameters()).step()
    with pytest.raises(ValueError, match="betas"):
        LazyAdam(table.parameters(), betas=(1.0, 0.9))
