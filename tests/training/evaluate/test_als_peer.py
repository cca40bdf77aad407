"""The report's ALS peer on known-answer data, and the peers' configuration in the pipeline.

"The validation item is the only clue": subject users have one train item nobody else touched, then
the first item of a group (validation), then the second (test). Background users touch all of one
group's items. Only a peer whose test query knows the validation item (the standard protocol's refit
on train + validation) can find the test item's group; the train-only fit knows nothing of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.hand_made import hand_made_log
from training.config_file import load_config
from training.data.split import leave_last_out
from training.data.types import Split
from training.evaluate.models import fit_peers
from training.evaluate.peers import als_peer, train_matrix
from training.evaluate.ranking import evaluate

pytest.importorskip("implicit", reason="the ALS peer needs the implicit package (the bench extra)")

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"
GROUPS, GROUP_ITEMS, BACKGROUND, SUBJECTS = 4, 6, 8, 3
GRID = [{"factors": 4, "regularization": r, "alpha": 10.0, "iterations": 15} for r in (0.1, 1.0)]


@pytest.fixture(scope="module")
def only_clue() -> tuple[Split, np.ndarray]:
    """(split, the subject users): each subject's validation item is its only link to its group."""
    rng = np.random.default_rng(0)
    n_subjects = GROUPS * SUBJECTS
    lonely = GROUPS * GROUP_ITEMS  # items from here on: one per subject, touched by nobody else
    user: list[int] = []
    item: list[int] = []
    u = 0
    for g in range(GROUPS):
        for _ in range(BACKGROUND):
            picks = g * GROUP_ITEMS + rng.permutation(GROUP_ITEMS)
            user += [u] * GROUP_ITEMS
            item += picks.tolist()
            u += 1
    subjects = []
    for g in range(GROUPS):
        for _ in range(SUBJECTS):
            user += [u] * 3
            item += [lonely + len(subjects), g * GROUP_ITEMS, g * GROUP_ITEMS + 1]  # train, valid, test
            subjects.append(u)
            u += 1
    return leave_last_out(hand_made_log(user, item, u, lonely + n_subjects)), np.array(subjects)


def _subjects_only(split: Split, subjects: np.ndarray) -> Split:
    return split.evaluated_rows(np.isin(split.test_users, subjects))


def test_train_matrix_with_valid_adds_each_validation_item() -> None:
    # User 0: items 2, 0, 1, 3 -> train {2, 0}, valid 1, test 3. User 1: 2 rows -> train only.
    split = leave_last_out(hand_made_log([0, 0, 0, 0, 1, 1], [2, 0, 1, 3, 3, 3], 2, 4), min_interactions=3)
    np.testing.assert_array_equal(train_matrix(split).toarray(), [[1, 0, 1, 0], [0, 0, 0, 2]])
    np.testing.assert_array_equal(
        train_matrix(split, with_valid=True).toarray(), [[1, 1, 1, 0], [0, 0, 0, 2]]
    )


def test_standard_test_query_uses_the_refit_with_the_validation_item(only_clue) -> None:
    split, subjects = only_clue
    subject_split = _subjects_only(split, subjects)
    hit = {}
    for history in ("train+valid", "train"):
        peer = als_peer(split, GRID, seed=0, threads=1, test_history=history, k=5, recall_k=10)
        assert peer.refit == history and peer.record()["fitted_on"] == history
        metrics = evaluate(peer.model.score_fn(), subject_split, "test", 1, k=5, test_history=history)
        hit[history] = metrics["hr@5"]
    # Refit: the 5 unseen items of the validation item's group fill the top-5, the test item among them.
    assert hit["train+valid"] >= 0.9
    # Train-only: a lonely item says nothing; 5 of ~34 candidates at random is about 0.15.
    assert hit["train"] <= 0.6


def test_tuning_records_every_grid_point_and_is_seeded(only_clue) -> None:
    split, _ = only_clue
    a = als_peer(split, GRID, seed=3, threads=1, test_history="train+valid", k=5, recall_k=10)
    b = als_peer(split, GRID, seed=3, threads=1, test_history="train+valid", k=5, recall_k=10)
    np.testing.assert_array_equal(a.model.user_factors, b.model.user_factors)
    record = a.record()
    assert [t["params"] for t in record["trials"]] == GRID
    assert record["chosen"] in GRID and record["metric"] == "ndcg@5"
    best = max(t["ndcg@5"] for t in record["trials"])
    assert record["trials"][GRID.index(record["chosen"])]["ndcg@5"] == best
    assert record["parameters"] == (split.n_users + split.n_items) * 4


def test_fit_peers_follows_eval_peers(only_clue) -> None:
    split, _ = only_clue
    cfg = load_config(
        TINY, ["eval.als.factors=[4]", "eval.als.regularization=[0.1]", "eval.als.alpha=[10.0]"]
    )
    models, records, skipped = fit_peers(cfg, split, split)
    assert list(models) == ["popularity", "als"] and list(records) == ["als"] and skipped == {}
    assert records["als"]["fitted_on"] == "train+valid"
    only_pop = load_config(TINY, ["eval.peers=['popularity']"])
    assert list(fit_peers(only_pop, split, split)[0]) == ["popularity"]


def test_als_is_skipped_with_the_reason_when_implicit_is_missing(only_clue, monkeypatch) -> None:
    import training.evaluate.models

    monkeypatch.setattr(
        training.evaluate.models, "implicit_missing", lambda: "implicit is not installed (test)"
    )
    split, _ = only_clue
    models, records, skipped = fit_peers(load_config(TINY), split, split)
    assert list(models) == ["popularity"] and records == {}
    assert skipped == {"als": "implicit is not installed (test)"}
