"""The synthetic shop: seeded, well-formed, skewed, and with history that beats popularity."""

from __future__ import annotations

import re

import numpy as np
import pytest

from training.config import SyntheticConfig
from training.data.split import leave_last_out
from training.data.synthetic import generate_synthetic
from training.data.types import DataError

SMALL = SyntheticConfig(n_users=1000, n_items=2000, n_interactions=30_000, n_categories=20, seed=0)


@pytest.fixture(scope="module")
def shop():
    return generate_synthetic(SMALL)


def by_user_then_time(log) -> np.ndarray:
    return np.lexsort((log.timestamp, log.user))


def test_same_seed_same_arrays_other_seed_other_shop(shop):
    again = generate_synthetic(SMALL)
    for name in ("user", "item", "timestamp", "weight"):
        np.testing.assert_array_equal(getattr(shop, name), getattr(again, name))
    np.testing.assert_array_equal(shop.catalog.price, again.catalog.price)
    assert shop.fingerprint == again.fingerprint
    other = generate_synthetic(SMALL.model_copy(update={"seed": 1}))
    assert other.fingerprint != shop.fingerprint


def test_shapes_ids_and_catalog(shop):
    assert len(shop) == 30_000 and shop.n_users == 1000 and shop.n_items == 2000
    assert shop.user_ids[0] == "u000000" and shop.user_ids[-1] == "u000999"
    assert shop.catalog.item_ids[0] == "i0000000" and shop.catalog.item_ids[1234] == "i0001234"
    assert shop.catalog.categories[7] == "cat_07" and len(shop.catalog.categories) == 20
    assert all(re.fullmatch(r"u\d{6}", u) for u in shop.user_ids.tolist())
    assert shop.user.dtype == shop.item.dtype == shop.timestamp.dtype == np.int64
    assert shop.weight.dtype == np.float32 and (shop.weight == 1).all()
    assert np.bincount(shop.user, minlength=shop.n_users).min() >= 1  # every user appears
    assert shop.item.min() >= 0 and shop.item.max() < shop.n_items
    assert set(np.unique(shop.catalog.category).tolist()) == set(range(20))  # every category has items
    assert (shop.catalog.price > 0).all() and np.isfinite(shop.catalog.price).all()


def test_log_is_time_ordered_and_strictly_increasing_per_user(shop):
    assert (np.diff(shop.timestamp) >= 0).all()
    order = by_user_then_time(shop)
    same_user = np.diff(shop.user[order]) == 0
    assert (np.diff(shop.timestamp[order])[same_user] > 0).all()
    span_days = (shop.timestamp.max() - shop.timestamp.min()) / 86_400
    assert 150 < span_days < 200  # the 180-day window


def top_share(log) -> float:
    counts = np.sort(np.bincount(log.item, minlength=log.n_items))[::-1]
    return counts[: log.n_items // 100].sum() / counts.sum()


def test_popularity_is_skewed_and_follows_the_zipf_exponent(shop):
    assert top_share(shop) > 0.15  # top 1% of items; uniform popularity would give about 0.01
    flat = generate_synthetic(SMALL.model_copy(update={"zipf_exponent": 0.3}))
    assert top_share(flat) < top_share(shop) / 2


def test_prices_differ_by_category(shop):
    # log-normal per category: the spread of category medians dwarfs a shuffled assignment's.
    cat, log_price = shop.catalog.category, np.log(shop.catalog.price)
    medians = [np.median(log_price[cat == c]) for c in range(20)]
    shuffled = np.random.default_rng(0).permutation(log_price)
    shuffled_medians = [np.median(shuffled[cat == c]) for c in range(20)]
    assert np.std(medians) > 5 * np.std(shuffled_medians)


def test_sessions_mostly_stay_in_one_category(shop):
    order = by_user_then_time(shop)
    cat = shop.catalog.category[shop.item[order]]
    same_user = np.diff(shop.user[order]) == 0
    same_cat = (np.diff(cat) == 0)[same_user].mean()
    share = np.bincount(cat, minlength=20) / len(cat)
    assert same_cat > 0.6
    assert same_cat > 3 * (share**2).sum()  # what independent draws would give


def test_history_beats_popularity(shop):
    """The top-10 of the last item's category beats the global top-10 clearly on the test items."""
    split = leave_last_out(shop)
    pop = split.item_popularity()
    cat = shop.catalog.category
    global_top = np.argsort(-pop, kind="stable")[:10]
    by_cat = np.lexsort((-pop, cat))  # items by category, most popular first
    start = np.searchsorted(cat[by_cat], np.arange(20))
    cat_top = np.stack([by_cat[s : s + 10] for s in start])  # (20, 10)
    last = split.valid_items  # the interaction just before each test item
    hit_pop = np.isin(split.test_items, global_top).mean()
    hit_hist = (cat_top[cat[last]] == split.test_items[:, None]).any(axis=1).mean()
    assert hit_hist > 1.5 * hit_pop


def test_users_have_price_levels(shop):
    """A user's price band is persistent: early and late purchases' price ranks correlate."""
    cat, price = shop.catalog.category, shop.catalog.price
    rank = np.empty(shop.n_items)
    order = np.lexsort((price, cat))
    sizes = np.bincount(cat, minlength=20)
    rank[order] = (np.arange(shop.n_items) - np.repeat(np.cumsum(sizes) - sizes, sizes)) / sizes[cat[order]]
    by = by_user_then_time(shop)
    users, r = shop.user[by], rank[shop.item[by]]
    counts = np.bincount(users, minlength=shop.n_users)
    starts = np.cumsum(counts) - counts
    half = np.arange(len(users)) - starts[users] < counts[users] // 2
    keep = counts >= 10
    early = np.bincount(users[half], weights=r[half], minlength=shop.n_users) / np.maximum(counts // 2, 1)
    late = np.bincount(users[~half], weights=r[~half], minlength=shop.n_users) / (counts - counts // 2)
    assert np.corrcoef(early[keep], late[keep])[0, 1] > 0.5


def test_more_categories_than_items_still_works():
    log = generate_synthetic(SyntheticConfig(n_users=5, n_items=3, n_interactions=40, n_categories=8))
    assert len(log) == 40 and log.n_items == 3
    assert set(log.catalog.category.tolist()) <= set(range(8))


def test_fewer_interactions_than_users_is_refused():
    with pytest.raises(DataError, match=r"n_interactions \(5\) must be at least n_users \(10\)"):
        generate_synthetic(SyntheticConfig(n_users=10, n_items=5, n_interactions=5))
