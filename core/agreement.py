"""How far two ranked lists agree: the teacher-vs-student metrics used offline and in shadow.

Lists are sequences of item ids (any hashable), best first, without duplicates. Every function is
pure and deterministic so offline reports and the service's shadow report measure the same thing.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Sequence

Ranking = Sequence[Hashable]


def overlap_at_k(a: Ranking, b: Ranking, k: int) -> float:
    """|a[:k] ∩ b[:k]| / k: the share of the top-k the two lists have in common."""
    if k <= 0:
        raise ValueError("k must be positive")
    return len(set(a[:k]) & set(b[:k])) / k


def rbo(a: Ranking, b: Ranking, p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap (Webber, Moffat & Zobel, TOIS 2010, eq. 32).

    Top-weighted: with p = 0.9 the first 10 ranks carry ~86% of the weight. Identical lists give
    1.0, disjoint lists 0.0. Handles lists of different lengths (the shorter is treated as
    ending where it ends, not as disagreeing beyond it).
    """
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, n_long = len(short), len(long_)
    if s == 0:
        return 1.0 if n_long == 0 else 0.0
    seen_short: set[Hashable] = set()
    seen_long: set[Hashable] = set()
    overlap = 0
    overlaps = [0] * (n_long + 1)  # overlaps[d] = X_d, the overlap at depth d
    for d in range(1, n_long + 1):
        x = long_[d - 1]
        if d <= s:
            y = short[d - 1]
            if x == y:
                overlap += 1
            else:
                overlap += (x in seen_short) + (y in seen_long)
            seen_short.add(y)
        else:
            overlap += x in seen_short
        seen_long.add(x)
        overlaps[d] = overlap
    x_s, x_l = overlaps[s], overlaps[n_long]
    total = sum(overlaps[d] / d * p**d for d in range(1, n_long + 1))
    total += sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, n_long + 1))
    return (1 - p) / p * total + ((x_l - x_s) / n_long + x_s / s) * p**n_long


def kendall_tau(a: Ranking, b: Ranking) -> float | None:
    """Kendall's tau-a between the orders of the items both lists contain.

    None when fewer than two items are shared (the order of one item says nothing).
    """
    pos_b = {item: i for i, item in enumerate(b)}
    shared = [pos_b[item] for item in a if item in pos_b]  # b-ranks in a's order
    n = len(shared)
    if n < 2:
        return None
    # Count concordant pairs in O(n log n) with a sorted list, not a Python double loop: at k = 1000
    # the double loop held the GIL for ~0.1 s in the service's shadow worker. Ranks are unique, so
    # every pair is either concordant or discordant.
    seen: list[int] = []  # b-ranks of the items after the current one in a, sorted
    concordant = 0
    for rank in reversed(shared):
        concordant += len(seen) - bisect.bisect_right(seen, rank)
        bisect.insort(seen, rank)
    pairs = n * (n - 1) // 2
    return (2 * concordant - pairs) / pairs


def ndcg_vs_reference(candidate: Ranking, reference: Ranking, k: int) -> float:
    """NDCG@k of `candidate` taking `reference` (the teacher's list) as the ideal ranking.

    Graded relevance from the reference: the item at reference rank r (0-based) has gain k - r,
    items outside the reference's top-k have gain 0; discount 1/log2(position + 2). The
    reference itself scores 1.0; a list sharing nothing with it scores 0.0.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    gain = {item: k - r for r, item in enumerate(reference[:k])}
    dcg = sum(gain.get(item, 0) / math.log2(i + 2) for i, item in enumerate(candidate[:k]))
    ideal = sum((k - r) / math.log2(r + 2) for r in range(min(k, len(reference))))
    return dcg / ideal if ideal > 0 else 0.0


def agreement(student: Ranking, teacher: Ranking, k: int, p: float = 0.9) -> dict[str, float | None]:
    """All four agreement metrics at once, keyed as the API and reports name them."""
    return {
        "overlap@k": overlap_at_k(student, teacher, k),
        "rbo": rbo(student[:k], teacher[:k], p),
        "kendall_tau": kendall_tau(student[:k], teacher[:k]),
        "ndcg_vs_teacher": ndcg_vs_reference(student, teacher, k),
    }
