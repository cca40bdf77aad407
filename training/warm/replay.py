"""Warm epochs that replay part of the past: every pair the served version never trained on, plus a
fresh random share (`warm.replay`) of the pairs it did.

A nightly retrain sees the same log as the night before plus a few events per active user. The
version it continues from has already fitted the old pairs for a whole cold run, so a warm epoch
over every pair spends most of its steps on what the weights know. Continuous training in the field
trains on the new data and rehearses a sample of the old so the model does not forget it (Monolith;
"experience replay" in continual learning). Off by default (`warm.replay = 1`): on the public Amazon
logs, where every user has new events, 0.25 made the students 30% faster, a whole warm retrain 5-10%,
put 2-3x as many new products in a top 10, and cost 0.8 (Beauty) and 2.3 (Sports) points of the
cold student's NDCG@10 on the mean of 3 seeds (docs/retraining.md).

Only the students replay: their cost is per pair, and their soft labels come from a teacher trained
on every pair. The teacher reads whole windows (a user's last `history_len` pairs, which hold the
user's new pairs whenever they have any), so only its loss could skip old targets; on Beauty that cut
the teacher's time by a fifth to a quarter and the student's test NDCG@10 by 2.6-3.6%.

Which pairs the version trained on, read from its own log (`seed_interactions.npz`, every
interaction of the log it was trained from, user then time): each known user's oldest
`count - 2` interactions. The two newest were that run's test item and, for the users early
stopping read, the validation item; counting both as new can only add work, never skip a pair the
version did not see. A version whose seed holds the train split only (`seed_scope = "train"`) trained
on all of it; a version without a seed, or a new user, has no trained pairs: everything is new.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.data.types import Split
from training.fit.examples import Pairs
from training.warm.checkpoints import WarmSource

HELD_OUT_NEWEST = 2  # a version's test item and early stopping's validation item, per user


def trained_counts(source: WarmSource, user_map: np.ndarray) -> np.ndarray:
    """int64 [n_users of the new data]: how many of each user's oldest interactions the version
    trained on, at most (see the module's docstring); `user_map`: new index -> the version's."""
    out = np.zeros(len(user_map), dtype=np.int64)
    name = source.manifest.seed_interactions
    if not name or not (source.path / name).is_file():
        return out
    with np.load(source.path / name, allow_pickle=False) as seed:
        counts = np.bincount(seed["user"], minlength=len(source.user_ids))
    held_out = HELD_OUT_NEWEST if source.manifest.seed_scope == "log" else 0
    known = user_map >= 0
    out[known] = np.maximum(counts[user_map[known]] - held_out, 0)
    return out


def fresh_pairs(split: Split, pairs: Pairs, trained: np.ndarray) -> np.ndarray:
    """bool [P]: the pairs whose target the version did not train on (position >= its trained count).

    A user's train items are in time order and a retrain's log extends the version's, so the
    version's trained interactions are the user's first `trained[user]` train items."""
    position = pairs.pos - split.train_indptr[pairs.user]
    return position >= trained[pairs.user]


def replay_order(fresh: np.ndarray, share: float) -> Callable[[np.random.Generator], np.ndarray]:
    """Each epoch's examples: every fresh one and a new random `share` of the others, shuffled."""
    fresh_rows, old_rows = np.flatnonzero(fresh), np.flatnonzero(~fresh)
    n_old = round(share * len(old_rows))

    def order(rng: np.random.Generator) -> np.ndarray:
        picked = rng.choice(old_rows, size=n_old, replace=False) if n_old else old_rows[:0]
        return rng.permutation(np.concatenate([fresh_rows, picked]))

    return order
