"""Training examples built once as arrays from the Split (no per-example Python in the hot path).

Every train interaction after a user's first is a (history -> next item) pair. The teacher sees them
as windows of `history_len` consecutive pairs (one causal forward pass scores all L positions); the
student gathers each pair's left-padded history on the fly from the flat train array. Batches can be
cut to their real length (`trim_padding`), and ordered so that they hold examples of similar length
(`length_bucketed_order`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from training.data.types import Split


@dataclass(frozen=True)
class Pairs:
    """Every (history -> next item) pair of the train split, in user then time order.

    pos[i] indexes split.train_items at the pair's target; its history is the `history_len`
    items before it (same user only). window/col locate the pair in the teacher's windows.
    """

    user: np.ndarray  # int64 [P]
    pos: np.ndarray  # int64 [P]: global index of the target in split.train_items
    window: np.ndarray  # int64 [P]
    col: np.ndarray  # int64 [P]
    n_windows: int


def build_pairs(split: Split, history_len: int) -> Pairs:
    """Vectorised: pairs counted from each user's most recent one backwards, L per window."""
    L = history_len
    users = split.train_users
    start = split.train_indptr[users]
    t = np.arange(len(users), dtype=np.int64) - start  # position inside the user's sequence
    keep = t >= 1
    user, pos, t = users[keep], np.flatnonzero(keep).astype(np.int64), t[keep]
    n = np.diff(split.train_indptr)[user]  # train length of each pair's user
    r = (n - 1) - t  # 0 = the user's last pair
    k = r // L
    n_win_user = np.zeros(split.n_users, dtype=np.int64)
    np.maximum.at(n_win_user, user, k + 1)
    first = np.zeros(split.n_users + 1, dtype=np.int64)
    np.cumsum(n_win_user, out=first[1:])
    return Pairs(user=user, pos=pos, window=first[user] + k, col=(L - 1) - r % L, n_windows=int(first[-1]))


def window_tensors(split: Split, pairs: Pairs, history_len: int) -> tuple[torch.Tensor, ...]:
    """(users [W], inputs [W, L] left-padded with n_items, targets [W, L] with -1 where no pair)."""
    W, L = pairs.n_windows, history_len
    users = np.zeros(W, dtype=np.int64)
    users[pairs.window] = pairs.user
    inputs = np.full((W, L), split.n_items, dtype=np.int64)
    targets = np.full((W, L), -1, dtype=np.int64)
    inputs[pairs.window, pairs.col] = split.train_items[pairs.pos - 1]
    targets[pairs.window, pairs.col] = split.train_items[pairs.pos]
    return torch.from_numpy(users), torch.from_numpy(inputs), torch.from_numpy(targets)


def gather_histories(split: Split, pairs: Pairs, idx: np.ndarray, history_len: int) -> np.ndarray:
    """int64 [B, L]: the left-padded histories of pairs `idx` (items before each target, same user)."""
    return histories_before(split, pairs.user[idx], pairs.pos[idx], history_len)


def histories_before(split: Split, user: np.ndarray, pos: np.ndarray, history_len: int) -> np.ndarray:
    """int64 [B, L]: the user's train items before global position `pos`, left-padded with n_items.

    pos = split.train_indptr[user + 1] gives the whole train history (what the service sees).
    """
    src = pos[:, None] - history_len + np.arange(history_len)[None]  # (B, L), last column = pos - 1
    valid = src >= split.train_indptr[user][:, None]
    return np.where(valid, split.train_items[np.clip(src, 0, None)], split.n_items)


def trim_padding(history: torch.Tensor, padding_value: int, *more: torch.Tensor) -> torch.Tensor:
    """Drop the leading columns that are padding in every row of a left-padded batch.

    Exact for both models: positions count from the right, so extra left padding never changes an
    output. On shop logs (~9 interactions per user, history_len 50) most of a batch is padding, and
    the transformer's cost is quadratic in the columns it keeps. `more` tensors (e.g. the targets of
    the same windows) are cut alike; with them a tuple is returned.
    """
    real = (history != padding_value).any(0)  # (L,)
    first = int(real.to(torch.int8).argmax()) if bool(real.any()) else history.shape[1] - 1
    if not more:
        return history[:, first:]
    return (history[:, first:], *(t[:, first:] for t in more))  # type: ignore[return-value]


def length_bucketed_order(
    lengths: np.ndarray, batch_size: int, pool_batches: int = 64
) -> Callable[[np.random.Generator], np.ndarray]:
    """An epoch order whose batches hold examples of similar length, so `trim_padding` cuts them short.

    Each epoch: shuffle, cut into pools of `pool_batches` batches, sort each pool by length, cut it
    into batches, shuffle the batches (a short final batch stays last, so batch boundaries stay at
    multiples of batch_size). Every example is still seen once per epoch in a random batch order;
    on shop logs (median 3 pairs per window, a few of 50) a batch then costs a fraction of a uniform one.
    """
    lengths = np.asarray(lengths)

    def order(rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(len(lengths))
        pool = batch_size * pool_batches
        batches = []
        for lo in range(0, len(perm), pool):
            chunk = perm[lo : lo + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        short = [b for b in batches if len(b) < batch_size]
        picked = [full[i] for i in rng.permutation(len(full))] + short
        return np.concatenate(picked) if picked else perm

    return order
