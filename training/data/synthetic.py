"""The built-in synthetic shop: a seeded, fully vectorised generator of a realistic interaction log.

How the shop works (so that a model has something to learn, and history beats popularity):
- Items belong to categories and have a price (log-normal per category); within its category each
  item falls in one of a few price bands. Popularity is Zipf-like over a random ranking of items.
- Each user likes one to three categories (Dirichlet weights) and has a price level in [0, 1].
- A user's log is a sequence of sessions (geometric length, mean `session_length`). A session picks
  a category from the user's tastes (sometimes a random one, by category popularity) and mostly
  stays in it; each item is drawn in proportion to popularity within (category, price band near
  the user's price level). Sometimes the next item is instead a *related* item of the previous one
  (a near neighbour in a fixed random order of its group), which only a sequence model can exploit.
- Timestamps: each user starts at a random time in the first half of a 180-day window and spreads
  their sessions over the rest of it; within a session items are seconds to minutes apart. They
  strictly increase per user. The log is returned sorted by time, like an event stream.

No Python loops over users, sessions or interactions: 1M items and 10M interactions take seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from training.config import SyntheticConfig
from training.data.types import Catalog, DataError, Interactions

logger = logging.getLogger(__name__)

N_BANDS = 4  # price bands per category
N_FAVOURITES = 3  # at most this many favourite categories per user
EXPLORE = 0.1  # a session's category is drawn by global category popularity, not taste
STAY = 0.85  # an interaction stays in its session's category
FOLLOW = 0.3  # an interaction is a related item of the previous one
MAX_HOP = 3  # related items are at most this far apart in their group's fixed order
BAND_NOISE = 0.15  # spread of the price band around the user's price level
START = 1_700_000_000  # epoch seconds of the window's start (2023-11-14)
WINDOW = 180 * 86_400
MEAN_CLICK_GAP = 90.0  # seconds between items within a session


@dataclass(frozen=True)
class _Shop:
    """Items grouped by (category, price band): `order` lists item indices group by group."""

    category: np.ndarray  # int32 [n_items]
    price: np.ndarray  # float32 [n_items]
    category_mass: np.ndarray  # float64 [n_categories]: share of popularity; 0 for empty categories
    group_of_band: np.ndarray  # int64 [n_categories]: first group index of each category
    bands: np.ndarray  # int64 [n_categories]: number of bands (groups) of each category
    order: np.ndarray  # int64 [n_items]: item indices sorted by group, random within a group
    group_start: np.ndarray  # int64 [n_groups]: offset of each group in `order`
    group_size: np.ndarray  # int64 [n_groups]
    cum: np.ndarray  # float64 [n_items]: cumulative popularity along `order`
    group_cum0: np.ndarray  # float64 [n_groups]: cumulative popularity before each group
    group_mass: np.ndarray  # float64 [n_groups]


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(max(n - 1, 0))))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=f"<U{len(prefix) + width}")


def _make_shop(cfg: SyntheticConfig, rng: np.random.Generator) -> _Shop:
    n, n_cat = cfg.n_items, cfg.n_categories
    # Category sizes follow their own mild power law; every category gets an item when possible.
    cat_weight = rng.permutation(np.arange(1, n_cat + 1, dtype=np.float64) ** -0.7)
    cat_weight /= cat_weight.sum()
    seeded = min(n, n_cat)
    category = np.concatenate([np.arange(seeded), rng.choice(n_cat, size=n - seeded, p=cat_weight)])
    category = rng.permutation(category).astype(np.int32)
    popularity = rng.permutation(np.arange(1, n + 1, dtype=np.float64)) ** -cfg.zipf_exponent
    log_mean = rng.uniform(np.log(5.0), np.log(300.0), size=n_cat)
    log_sd = rng.uniform(0.3, 0.7, size=n_cat)
    price = np.exp(log_mean[category] + log_sd[category] * rng.standard_normal(n))
    price = np.maximum(np.round(price, 2), 0.01).astype(np.float32)

    # Price band = price rank within the category, cut into at most N_BANDS equal parts.
    size = np.bincount(category, minlength=n_cat)
    by_price = np.lexsort((price, category))
    cat_start = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[by_price] = np.arange(n) - cat_start[category[by_price]]
    bands = np.minimum(size, N_BANDS)
    band = rank * bands[category] // np.maximum(size[category], 1)
    group_of_band = np.concatenate([[0], np.cumsum(bands)[:-1]])
    group = group_of_band[category] + band
    n_groups = int(bands.sum())

    order = np.lexsort((rng.random(n), group))  # random order within a group: the "related" graph
    group_size = np.bincount(group, minlength=n_groups)
    group_start = np.concatenate([[0], np.cumsum(group_size)[:-1]])
    cum = np.cumsum(popularity[order])
    group_mass = np.bincount(group, weights=popularity, minlength=n_groups)
    group_cum0 = np.concatenate([[0.0], np.cumsum(group_mass)[:-1]])
    category_mass = np.bincount(category, weights=popularity, minlength=n_cat)
    return _Shop(
        category=category,
        price=price,
        category_mass=category_mass / category_mass.sum(),
        group_of_band=group_of_band,
        bands=bands,
        order=order,
        group_start=group_start,
        group_size=group_size,
        cum=cum,
        group_cum0=group_cum0,
        group_mass=group_mass,
    )


def _taste_draw(
    rng: np.random.Generator, fav: np.ndarray, fav_cum: np.ndarray, users: np.ndarray
) -> np.ndarray:
    """A category per entry of `users`, drawn from each user's favourite-category weights."""
    u = rng.random(len(users))
    slot = (u[:, None] >= fav_cum[users]).sum(axis=1)  # (n,) index into the user's favourites
    return fav[users, np.minimum(slot, N_FAVOURITES - 1)]


def generate_synthetic(cfg: SyntheticConfig) -> Interactions:
    """A seeded synthetic shop log; the same config gives identical arrays (and fingerprint)."""
    n_users, n_items, n = cfg.n_users, cfg.n_items, cfg.n_interactions
    if n < n_users:
        raise DataError(
            f"synthetic: n_interactions ({n}) must be at least n_users ({n_users}): every user needs one"
        )
    rng = np.random.default_rng(cfg.seed)
    shop = _make_shop(cfg, rng)

    # Users: favourite categories (by category popularity), Dirichlet weights, price level, activity.
    n_fav = rng.integers(1, N_FAVOURITES + 1, size=n_users)
    fav = rng.choice(cfg.n_categories, size=(n_users, N_FAVOURITES), p=shop.category_mass)
    fav_w = rng.gamma(1.0, size=(n_users, N_FAVOURITES)) * (np.arange(N_FAVOURITES) < n_fav[:, None])
    fav_cum = np.cumsum(fav_w / fav_w.sum(axis=1, keepdims=True), axis=1)  # (U, F)
    fav_cum[np.arange(N_FAVOURITES) >= n_fav[:, None] - 1] = 1.0  # no rounding past the last favourite
    price_level = rng.beta(2.0, 2.0, size=n_users)
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    counts = 1 + rng.multinomial(n - n_users, activity / activity.sum())

    # Interactions, grouped by user, in time order within each user.
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)  # (N,)
    user_start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (U,)
    new_session = rng.random(n) < 1.0 / cfg.session_length
    new_session[user_start] = True
    session = np.cumsum(new_session) - 1  # (N,)
    session_user = user[new_session]  # (S,)
    session_cat = _taste_draw(rng, fav, fav_cum, session_user)
    explore = rng.random(len(session_user)) < EXPLORE
    session_cat[explore] = rng.choice(cfg.n_categories, size=int(explore.sum()), p=shop.category_mass)

    category = session_cat[session]  # (N,)
    away = ~new_session & (rng.random(n) >= STAY)
    category[away] = _taste_draw(rng, fav, fav_cum, user[away])
    level = np.clip(price_level[user] + BAND_NOISE * rng.standard_normal(n), 0.0, 1.0 - 1e-9)
    group = shop.group_of_band[category] + (level * shop.bands[category]).astype(np.int64)

    # Fresh draws: an item of the group in proportion to popularity (inverse CDF on `cum`).
    target = shop.group_cum0[group] + rng.random(n) * shop.group_mass[group]
    pos = np.searchsorted(shop.cum, target, side="right")
    first, size = shop.group_start[group], shop.group_size[group]
    pos = np.clip(pos, first, first + size - 1)

    # Related items: a chain of hops from the last fresh draw, within that draw's group.
    follow = ~new_session & ~away & (rng.random(n) < FOLLOW)
    hop = rng.integers(1, MAX_HOP + 1, size=n) * rng.choice([-1, 1], size=n)
    hop[~follow] = 0
    anchor = np.maximum.accumulate(np.where(follow, 0, np.arange(n)))  # (N,) last fresh draw
    walked = np.cumsum(hop)
    walked -= walked[anchor]
    a_first, a_size = shop.group_start[group[anchor]], shop.group_size[group[anchor]]
    pos = np.where(follow, a_first + (pos[anchor] - a_first + walked) % a_size, pos)
    item = shop.order[pos]

    # Timestamps: sessions spread over the rest of the window, clicks seconds apart, strictly increasing.
    # Session gaps are exponential spacings normalised per user (uniform order statistics), so each
    # user's sessions fill the rest of the window whatever their number.
    offset = rng.uniform(0.0, WINDOW / 2, size=n_users)
    spacing = rng.exponential(1.0, size=n)
    tail = rng.exponential(1.0, size=n_users)  # the spacing after the last session
    total = np.bincount(session_user, weights=spacing[new_session], minlength=n_users) + tail
    scale = (WINDOW - offset) / total
    gap = np.where(new_session, spacing * scale[user], rng.exponential(MEAN_CLICK_GAP, size=n))
    step = 1 + gap.astype(np.int64)
    step[user_start] = 0
    elapsed = np.cumsum(step)
    timestamp = START + offset.astype(np.int64)[user] + elapsed - elapsed[user_start][user]

    by_time = np.argsort(timestamp, kind="stable")  # an event stream; per-user order is kept
    catalog = Catalog(
        item_ids=_ids("i", n_items, 7),
        category=shop.category,
        categories=[str(c) for c in _ids("cat_", cfg.n_categories, 2)],
        price=shop.price,
    )
    log = Interactions(
        name="synthetic",
        user=user[by_time],
        item=item[by_time].astype(np.int64),
        timestamp=timestamp[by_time],
        weight=np.ones(n, dtype=np.float32),
        user_ids=_ids("u", n_users, 6),
        catalog=catalog,
    )
    logger.info(
        "synthetic shop (seed %d): %d users, %d items, %d interactions, %d sessions",
        cfg.seed,
        n_users,
        n_items,
        n,
        len(session_user),
    )
    return log
