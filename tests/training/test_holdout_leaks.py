"""No test item reaches anything a model learns from, for every split setting the config accepts.

The log is built so that each evaluated user's test interaction is an item nobody else ever touches
(`t<user>`); any training array, popularity count, soft-label query or peer matrix that holds one of
those items has leaked the holdout. Users with a single interaction sit right after evaluated users in
the sorted log: the split once took such a user's validation row from the user before them
(`valid = end - 2`), turning one user's test item into another's training item.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import training.evaluate.peers as peers
from training.config import ConfigError, PipelineConfig
from training.config_file import load_config
from training.data.split import leave_last_out, training_split
from training.data.types import Catalog, Interactions, Split
from training.evaluate.models import fit_peers
from training.evaluate.ranking import padded_histories
from training.student.labels import soft_labels

# interactions per user, in user order: single-interaction users follow evaluated ones
COUNTS = [5, 1, 3, 2, 1, 6, 4, 2, 1, 3]
SHARED = 6  # items s0..s5 every user may touch; the rest are each evaluated user's own test item


def leak_log(min_interactions: int) -> tuple[Interactions, dict[int, int]]:
    """The log (file order shuffled, one timestamp tie decided by file order) and {user: test item}."""
    rng = np.random.default_rng(min_interactions)
    rows: list[tuple[int, int, int]] = []  # (user, item, timestamp)
    test_item: dict[int, int] = {}
    next_item = SHARED
    for user, count in enumerate(COUNTS):
        items = [int(i) for i in rng.integers(0, SHARED, count)]
        if count >= min_interactions:  # evaluated: the last interaction is an item of its own
            items[-1] = test_item[user] = next_item
            next_item += 1
        stamps = list(range(100, 100 + count))
        if count >= 3:
            stamps[-1] = stamps[-2]  # a tie: file order (the test row is written last) decides
        rows += [(user, item, ts) for item, ts in zip(items, stamps, strict=True)]
    # shuffled file order, except that a tied test row stays after its twin (file order breaks the tie)
    arr = _restore_tie_order(np.array(rows, np.int64)[rng.permutation(len(rows))])
    catalog = Catalog(
        item_ids=np.array([f"s{i}" for i in range(SHARED)] + [f"t{i}" for i in range(next_item - SHARED)]),
        category=np.full(next_item, -1, np.int32),
        categories=[],
        price=np.full(next_item, np.nan, np.float32),
    )
    log = Interactions(
        name="leak",
        user=arr[:, 0],
        item=arr[:, 1],
        timestamp=arr[:, 2],
        weight=np.ones(len(arr), np.float32),
        user_ids=np.array([f"u{u}" for u in range(len(COUNTS))]),
        catalog=catalog,
    )
    return log, test_item


def _restore_tie_order(arr: np.ndarray) -> np.ndarray:
    """Within a user's rows at the same timestamp, the test item (>= SHARED) comes last in the file."""
    arr = arr.copy()
    for user in np.unique(arr[:, 0]):
        at = np.flatnonzero(arr[:, 0] == user)
        for ts in np.unique(arr[at, 2]):
            tied = at[arr[at, 2] == ts]
            if len(tied) > 1:
                arr[tied] = arr[tied][np.argsort(arr[tied, 1] >= SHARED, kind="stable")]
    return arr


class RecordingTeacher:
    """A history-only teacher that remembers every history it is asked to score (the soft labels')."""

    takes_user_id, takes_history, known_users = False, True, None

    def __init__(self, n_users: int, n_items: int, history_len: int = 4, dim: int = 3) -> None:
        self.n_users, self.n_items, self.history_len, self.dim = n_users, n_items, history_len, dim
        self.padding_value, self.oov_user = n_items, n_users
        self.seen: list[np.ndarray] = []
        self._items = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(0))

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        self.seen.append(history.numpy().copy())
        return torch.ones(len(history), self.dim)

    def item_vectors(self) -> torch.Tensor:
        return self._items

    def eval(self) -> RecordingTeacher:
        return self

    def n_parameters(self) -> int:
        return self._items.numel()


def leak_config(
    tmp_path: Path,
    min_interactions: int,
    train_on_valid: bool,
    valid_max_users: int | None,
    test_history: str,
):
    cfg = load_config(
        None,
        [
            f"data.min_interactions={min_interactions}",
            f"eval.test_history={test_history}",
            f"eval.train_on_valid={'true' if train_on_valid else 'false'}",
            f"work_dir={tmp_path / 'work'}",
            "distill.top_m=3",
            "distill.n_sampled=2",
            "eval.als.factors=[2]",
            "eval.als.regularization=[0.1]",
            "eval.als.alpha=[1.0]",
            "eval.als.iterations=2",
        ],
    )
    cfg.teacher.valid_max_users = cfg.student.valid_max_users = valid_max_users
    return cfg


def test_the_config_refuses_fewer_than_two_interactions_and_so_does_the_split() -> None:
    with pytest.raises(ConfigError, match=r"data\.min_interactions: .*at least 2, got 1"):
        load_config(None, ["data.min_interactions=1"])
    log, _ = leak_log(2)
    with pytest.raises(ValueError, match="min_interactions must be at least 2, got 1"):
        leave_last_out(log, 1)


@pytest.mark.parametrize("min_interactions", [2, 3, 5])
@pytest.mark.parametrize(("train_on_valid", "valid_max_users"), [(True, None), (True, 2), (False, None)])
@pytest.mark.parametrize("test_history", ["train+valid", "train"])  # the ALS peer's refit follows it
def test_no_test_item_reaches_training_counts_soft_labels_or_peers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    min_interactions: int,
    train_on_valid: bool,
    valid_max_users: int | None,
    test_history: str,
) -> None:
    cfg: PipelineConfig = leak_config(
        tmp_path, min_interactions, train_on_valid, valid_max_users, test_history
    )
    log, test_item = leak_log(min_interactions)
    split = leave_last_out(log, cfg.data.min_interactions)
    held = np.array(sorted(test_item.values()), np.int64)
    # the split found exactly the constructed test items, each its own user's
    assert dict(zip(split.test_users.tolist(), split.test_items.tolist(), strict=True)) == test_item
    assert len(held) > 0

    train = training_split(cfg, split)
    for name, arrays in (("split", split), ("training split", train)):
        assert not np.isin(arrays.train_items, held).any(), name
        assert not np.isin(arrays.valid_items, held).any(), name
        assert (arrays.item_popularity()[held] == 0).all(), name
    queries = padded_histories(split, split.test_users, 10, then=split.valid_items)  # the test query
    assert not np.isin(queries, held).any()

    teacher = RecordingTeacher(log.n_users, log.n_items)
    labels = soft_labels(cfg, teacher, split, progress=False)  # type: ignore[arg-type]
    assert len(labels) > 0 and teacher.seen
    assert not np.isin(np.concatenate([h.ravel() for h in teacher.seen]), held).any()
    pairs_label = train.train_items[labels.pos[: labels.n_pairs]]  # each pair's hard label
    assert not np.isin(pairs_label, held).any()

    matrices: list[sp.csr_matrix] = []
    real = peers.train_matrix

    def recording(s: Split, with_valid: bool = False) -> sp.csr_matrix:
        matrices.append(real(s, with_valid))
        return matrices[-1]

    monkeypatch.setattr(peers, "train_matrix", recording)
    cfg.eval.peers = ["popularity"] + (["als"] if peers.implicit_missing() is None else [])
    models, _, _ = fit_peers(cfg, split, split)
    popularity = models["popularity"][0](np.array([0]), np.zeros((1, 1), np.int64))[0]
    assert (popularity[held] == 0).all()
    if "als" in cfg.eval.peers:
        assert len(matrices) == 2  # the one grid point's fit, then the refit for the test query
        for matrix in matrices:
            assert matrix[:, held].nnz == 0
