"""Each loss against values computed by hand (the arithmetic is in the comments)."""

import math

import pytest
import torch

from training.fit.losses import (
    hard_label_loss,
    rank_weights,
    ranking_distillation_loss,
    ranking_distillation_softmax_loss,
    sampled_softmax_loss,
    tempered_kl_loss,
)

LN3 = math.log(3.0)


def test_kl_of_identical_distributions_is_zero():
    z = torch.tensor([[1.0, -2.0, 0.5], [3.0, 3.0, -1.0]])
    assert tempered_kl_loss(z, z.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_two_items_by_hand():
    # p = softmax([0, ln3]) = [1/4, 3/4]; q = softmax([0, 0]) = [1/2, 1/2]
    # KL = 1/4 ln(1/2) + 3/4 ln(3/2) = -0.173287 + 0.304099 = 0.130812
    loss = tempered_kl_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]]), temperature=1.0)
    assert loss.item() == pytest.approx(0.130812, abs=1e-5)


def test_kl_is_scaled_by_temperature_squared():
    # With T = 2 the teacher logits [0, 2 ln3] soften to the same [1/4, 3/4]: loss = 2^2 * 0.130812
    loss = tempered_kl_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 2 * LN3]]), temperature=2.0)
    assert loss.item() == pytest.approx(4 * 0.130812, abs=1e-5)


def test_kl_ignores_masked_teacher_candidates():
    # p = [1/4, 3/4, 0]; q = softmax([0, 0, 5]) = [1, 1, e^5] / 150.413159
    # KL = 1/4 ln(0.25 * 150.413159) + 3/4 ln(0.75 * 150.413159) = 0.906773 + 3.544278 = 4.451051
    loss = tempered_kl_loss(
        torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, LN3, float("-inf")]]), temperature=1.0
    )
    assert loss.item() == pytest.approx(4.451051, abs=1e-4)


def test_kl_gradient_pulls_student_towards_teacher():
    s = torch.zeros(1, 2, requires_grad=True)
    tempered_kl_loss(s, torch.tensor([[0.0, LN3]]), temperature=1.0).backward()
    # d/ds KL = q - p = [1/2 - 1/4, 1/2 - 3/4]
    assert s.grad[0].tolist() == pytest.approx([0.25, -0.25], abs=1e-6)


def test_hard_label_loss_by_hand():
    # -ln softmax([0, ln3])[1] = -ln(3/4) = 0.287682
    assert hard_label_loss(torch.tensor([[0.0, LN3]]), torch.tensor([1])).item() == pytest.approx(
        0.287682, abs=1e-5
    )


def test_rank_weights_decay_exponentially():
    # exp(-1), exp(-2), exp(-3) = 0.367879, 0.135335, 0.049787; sum 0.553001
    assert rank_weights(3, 1.0).tolist() == pytest.approx([0.665241, 0.244728, 0.090031], abs=1e-5)


def test_ranking_distillation_by_hand():
    # K = 2, lambda = 1: w = [0.731059, 0.268941]. Teacher's 1st item is column 1 (logit ln3), 2nd column 0.
    # L = -(0.731059 ln sigmoid(ln3) + 0.268941 ln sigmoid(0)) = 0.731059*0.287682 + 0.268941*0.693147 = 0.396728
    loss = ranking_distillation_loss(torch.tensor([[0.0, LN3]]), torch.tensor([[1, 0]]), lam=1.0)
    assert loss.item() == pytest.approx(0.396728, abs=1e-5)


def test_ranking_distillation_softmax_by_hand():
    # log softmax([0, ln3]) = [ln 1/4, ln 3/4]; L = 0.731059*0.287682 + 0.268941*1.386294 = 0.583148
    loss = ranking_distillation_softmax_loss(torch.tensor([[0.0, LN3]]), torch.tensor([[1, 0]]), lam=1.0)
    assert loss.item() == pytest.approx(0.583148, abs=1e-5)


def test_sampled_softmax_applies_logq_correction():
    # corrected logits: positive 0 - ln(1/2) = ln2, negative 0 - ln(1/4) = ln4: loss = -ln(2/6) = ln3
    loss = sampled_softmax_loss(
        torch.tensor([0.0]),
        torch.tensor([[0.0]]),
        torch.tensor([math.log(0.5)]),
        torch.tensor([math.log(0.25)]),
    )
    assert loss.item() == pytest.approx(LN3, abs=1e-5)


def test_sampled_softmax_masks_accidental_hits():
    # the only negative is the positive itself: masked out, so the positive has all the mass
    loss = sampled_softmax_loss(
        torch.tensor([0.0]), torch.tensor([[5.0]]), torch.zeros(1), torch.zeros(1), torch.tensor([[True]])
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
