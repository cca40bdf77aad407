"""training/fit/examples.py: (history -> next item) pairs and windows, batches cut to their real length, and epochs of similar-length batches."""

from __future__ import annotations

import numpy as np
import torch

from training.config import StudentConfig
from training.data.types import Split
from training.fit.examples import (
    build_pairs,
    gather_histories,
    length_bucketed_order,
    trim_padding,
    window_tensors,
)
from training.student.model import MLPStudent

PAD = 9


def test_trim_padding_drops_only_columns_that_are_padding_in_every_row():
    x = torch.tensor([[PAD, PAD, PAD, 1, 2], [PAD, PAD, 3, 4, 5]])
    y = torch.tensor([[-1, -1, -1, 2, 7], [-1, -1, 4, 5, 8]])
    tx, ty = trim_padding(x, PAD, y)
    assert tx.tolist() == [[PAD, 1, 2], [3, 4, 5]] and ty.tolist() == [[-1, 2, 7], [4, 5, 8]]
    all_pad = torch.full((2, 4), PAD)
    assert trim_padding(all_pad, PAD).shape == (2, 1)  # one column kept: the model still gets an input


def test_trimmed_histories_give_the_students_exact_output():
    torch.manual_seed(0)
    model = MLPStudent(PAD, StudentConfig(dim=4, history_len=5, hidden=[8], dropout=0.0)).eval()
    x = torch.tensor([[PAD, PAD, PAD, 1, 2], [PAD, PAD, 3, 4, 5]])
    assert torch.allclose(model.user_vectors(x), model.user_vectors(trim_padding(x, PAD)), atol=1e-6)


def test_length_bucketed_order_is_a_permutation_of_similar_length_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    order = length_bucketed_order(lengths, batch_size=32, pool_batches=8)(np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))
    batches = [order[i : i + 32] for i in range(0, 1000, 32)]
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(1000)[:32]]) for _ in range(20)])
    assert len(batches[-1]) == 1000 % 32  # the one short batch comes last: boundaries stay aligned


def hand_split() -> Split:
    # user 0 train [5, 6, 7], user 1 train [8], user 2 train [1, 2, 3, 4, 0]
    return Split(
        n_users=3,
        n_items=10,
        train_indptr=np.array([0, 3, 4, 9]),
        train_items=np.array([5, 6, 7, 8, 1, 2, 3, 4, 0]),
        train_timestamps=np.arange(9),
        valid_users=np.array([0]),
        valid_items=np.array([9]),
        test_users=np.array([0]),
        test_items=np.array([1]),
    )


def test_pairs_and_windows_by_hand():
    split = hand_split()
    pairs = build_pairs(split, history_len=2)
    # pairs = every train item after the user's first: positions 1, 2 (user 0) and 5..8 (user 2)
    assert pairs.pos.tolist() == [1, 2, 5, 6, 7, 8]
    assert pairs.user.tolist() == [0, 0, 2, 2, 2, 2]
    # counted from each user's last pair backwards, 2 per window
    assert pairs.window.tolist() == [0, 0, 2, 2, 1, 1]
    assert pairs.col.tolist() == [0, 1, 0, 1, 0, 1]
    users, inputs, targets = window_tensors(split, pairs, 2)
    assert users.tolist() == [0, 2, 2]
    assert inputs.tolist() == [[5, 6], [3, 4], [1, 2]]
    assert targets.tolist() == [[6, 7], [4, 0], [2, 3]]
    hist = gather_histories(split, pairs, np.arange(6), history_len=3)
    assert hist.tolist() == [[10, 10, 5], [10, 5, 6], [10, 10, 1], [10, 1, 2], [1, 2, 3], [2, 3, 4]]
