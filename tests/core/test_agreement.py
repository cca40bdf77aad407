"""Agreement metrics on hand-made lists; every expected value was worked out by hand (see comments)."""

from __future__ import annotations

import pytest

from core.agreement import agreement, kendall_tau, ndcg_vs_reference, overlap_at_k, rbo

# log2(3) = 1.5849625007, log2(5) = 2.3219280949; p = 0.9 throughout.


def test_identical_lists_agree_perfectly() -> None:
    items = ["a", "b", "c", "d"]
    assert agreement(items, list(items), k=4) == {
        "overlap@k": 1.0,
        "rbo": pytest.approx(1.0),
        "kendall_tau": 1.0,
        "ndcg_vs_teacher": pytest.approx(1.0),
    }


def test_disjoint_lists_share_nothing() -> None:
    result = agreement([1, 2, 3], [4, 5, 6], k=3)
    assert result == {"overlap@k": 0.0, "rbo": 0.0, "kendall_tau": None, "ndcg_vs_teacher": 0.0}


def test_reversed_lists() -> None:
    student, teacher = [1, 2, 3], [3, 2, 1]
    # Overlaps by depth X = (0, 1, 3); RBO = (1-p)/p * (0 + p^2/2 + p^3) + p^3 = 0.126 + 0.729.
    assert rbo(student, teacher) == pytest.approx(0.855, abs=1e-12)
    # All three pairs are discordant.
    assert kendall_tau(student, teacher) == -1.0
    # Teacher gains 3->3, 2->2, 1->1. DCG = 1 + 2/log2(3) + 3/2; ideal = 3 + 2/log2(3) + 1/2.
    assert ndcg_vs_reference(student, teacher, 3) == pytest.approx(0.7899980042, abs=1e-9)
    assert overlap_at_k(student, teacher, 3) == 1.0


def test_partial_overlap() -> None:
    student, teacher = [1, 2, 3, 4], [1, 5, 2, 6]
    result = agreement(student, teacher, k=4)
    assert result["overlap@k"] == 0.5  # {1, 2} of 4
    # X = (1, 1, 2, 2): (1-p)/p * (p + p^2/2 + 2p^3/3 + 2p^4/4) + (2/4) p^4 = 0.23545 + 0.32805
    assert result["rbo"] == pytest.approx(0.5635, abs=1e-12)
    # Shared items 1, 2 keep their order in the teacher's list: one concordant pair.
    assert result["kendall_tau"] == 1.0
    # Gains 1->4, 5->3, 2->2, 6->1. DCG = 4 + 2/log2(3); ideal = 4 + 3/log2(3) + 2/2 + 1/log2(5).
    assert result["ndcg_vs_teacher"] == pytest.approx(0.7184930793, abs=1e-9)


def test_kendall_tau_on_one_swap_of_three() -> None:
    # Teacher ranks of the student's order: (1, 0, 2): one discordant, two concordant pairs.
    assert kendall_tau([1, 2, 3], [2, 1, 3]) == pytest.approx(1 / 3)


def test_kendall_tau_needs_two_shared_items() -> None:
    assert kendall_tau([1, 2, 3], [3, 7, 8]) is None


def test_rbo_treats_a_shorter_prefix_as_agreeing() -> None:
    # X = (1, 2, 2), s = 2, l = 3: (1-p)(1 + p + p^2) + p^3 = 1.
    assert rbo([1, 2], [1, 2, 3]) == pytest.approx(1.0, abs=1e-12)
    assert rbo([], []) == 1.0
    assert rbo([], [1]) == 0.0


def test_overlap_counts_only_the_top_k() -> None:
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], k=2) == 0.0
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], k=4) == 0.5


@pytest.mark.parametrize("bad", [0, -1])
def test_k_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        overlap_at_k([1], [1], bad)
    with pytest.raises(ValueError, match="k must be positive"):
        ndcg_vs_reference([1], [1], bad)


@pytest.mark.parametrize("p", [0.0, 1.0, 1.5])
def test_rbo_rejects_p_outside_the_open_unit_interval(p: float) -> None:
    with pytest.raises(ValueError, match="p must lie"):
        rbo([1], [1], p)


def test_kendall_tau_on_long_lists() -> None:
    # Pins the O(n log n) count against cases with a known answer: a full reversal of 1,000 items
    # (every pair discordant) and six items with three adjacent swaps (3 of 15 pairs discordant).
    items = list(range(1000))
    assert kendall_tau(items, items[::-1]) == -1.0
    assert kendall_tau([0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4]) == pytest.approx((12 - 3) / 15)
