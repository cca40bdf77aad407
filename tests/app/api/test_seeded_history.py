"""What the service knows about a known user is the version's whole log: the seed, with its event types.

The tiny version's seed (tests/fixtures/tiny_model.py) is each user's whole log; the pipeline writes
it that way (training/export/published_log.py). Versions published before (seed_scope "train", no event
arrays) still load and seed, and the service says their seed lacks each user's last interactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.experiment.assignment import FORCE_ARM_HEADER
from tests.fixtures.tiny_model import build_version, tiny_arrays

# one event type per seed row of tiny_arrays() (15 rows; u1's are rows 2-4: i01, i04, i05)
SEED_EVENTS = ["view", "purchase", "view", "cart", "purchase"] + ["view"] * 10


def test_history_and_exclusions_cover_the_whole_seed_with_its_event_types(
    tmp_path: Path, clients_for: Callable[..., TestClient]
) -> None:
    models = tmp_path / "models"
    build_version(models, "v1", tiny_arrays(), seed_events=SEED_EVENTS)
    client = clients_for(models)
    items = client.get("/v1/users/u1/history").json()["items"]
    assert [(i["item_id"], i["timestamp"], i["event"]) for i in items] == [
        ("i01", 100, "view"),
        ("i04", 105, "cart"),
        ("i05", 106, "purchase"),
    ]
    for arm in ("student", "teacher"):  # each A/B arm reads the one resolved history
        answer = client.post(
            "/v1/recommend", json={"user_id": "u1", "k": 12}, headers={FORCE_ARM_HEADER: arm}
        )
        served = [i["item_id"] for i in answer.json()["items"]]
        assert answer.json()["arm"] == arm
        assert len(served) == 9 and not {"i01", "i04", "i05"} & set(served)  # 12 items less the log's 3
    compared = client.post("/v1/compare", json={"user_id": "u1", "k": 12}).json()
    for side in ("student", "teacher"):
        assert not {"i01", "i04", "i05"} & {i["item_id"] for i in compared[side]["items"]}


def test_a_version_published_before_seeds_its_train_rows_and_says_so(
    tmp_path: Path, clients_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    build_version(models, "old", tiny_arrays(), seed_scope="train")  # no event arrays either
    with caplog.at_level(logging.WARNING, logger="app.engine.loading"):
        client = clients_for(models)
    items = client.get("/v1/users/u1/history").json()["items"]
    assert [(i["item_id"], i["event"]) for i in items] == [("i01", None), ("i04", None), ("i05", None)]
    assert any("version old seeds its train split only" in r.getMessage() for r in caplog.records)
