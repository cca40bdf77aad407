"""Two app instances sharing one real redis-server: a catalogue change made through one replica is
in every answer of the other after one catalogue poll (RECDISTILL_CATALOGUE_POLL_SECONDS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.experiment.assignment import FORCE_ARM_HEADER
from app.main import create_app
from tests.app.conftest import make_settings
from tests.redis_server import redis_server

REQUEST = {"history": ["i00"], "k": 4, "exclude_seen": False}  # -> i09, i06, i03, i00


def replicas(tmp_path: Path, models_dir: Path, url: str, poll: float) -> tuple[TestClient, TestClient]:
    shared: dict[str, Any] = {"history_backend": "redis", "redis_url": url, "catalogue_poll_seconds": poll}
    a = make_settings(tmp_path / "a", models_dir, **shared)
    b = make_settings(tmp_path / "b", models_dir, **shared)
    return TestClient(create_app(a)), TestClient(create_app(b))


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis") as url:
        yield url


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def answers(client: TestClient) -> list[list[str]]:
    """The item lists of every kind of answer a replica gives: the student and teacher arms, by user,
    the popular fallback, batch, and both sides of /v1/compare."""
    out = [
        ids(client.post("/v1/recommend", json=REQUEST).json()),
        ids(client.post("/v1/recommend", json=REQUEST, headers={FORCE_ARM_HEADER: "teacher"}).json()),
        ids(client.post("/v1/recommend", json={"user_id": "u0", "k": 12}).json()),
        ids(client.post("/v1/recommend", json={"history": [], "k": 12}).json()),
    ]
    out += [
        ids(r) for r in client.post("/v1/recommend/batch", json={"requests": [REQUEST]}).json()["results"]
    ]
    compare = client.post("/v1/compare", json=REQUEST).json()
    return [*out, ids(compare["student"]), ids(compare["teacher"])]


def test_a_change_through_one_replica_is_in_every_answer_of_the_other_after_one_poll(
    tmp_path: Path, models_dir: Path, redis_url: str, admin: dict[str, str]
) -> None:
    a, b = replicas(tmp_path, models_dir, redis_url, poll=0.0)  # no poller: the test polls by hand
    with a, b:
        assert all("i09" in items for items in answers(b))
        bulk = {"items": [{"item_id": "i09", "available": False}, {"item_id": "i03", "price": 99.0}]}
        assert a.patch("/admin/catalogue/items", json=bulk, headers=admin).status_code == 200
        assert not any("i09" in items for items in answers(a))  # the replica that took the change: at once
        assert all("i09" in items for items in answers(b))  # the other: not before its poll
        catalogue = b.app.state.catalogue  # type: ignore[attr-defined]
        assert catalogue.refresh() is True  # one poll
        assert not any("i09" in items for items in answers(b))
        assert b.get("/v1/catalogue").json()["generation"] == a.get("/v1/catalogue").json()["generation"] == 1
        priced = b.post("/v1/recommend", json={**REQUEST, "filters": {"min_price": 90}, "fields": ["price"]})
        assert priced.json()["items"] == [
            {"item_id": "i03", "score": pytest.approx(1.3 + 0.12 * 0.09), "price": 99.0}
        ]
        assert catalogue.refresh() is False  # nothing moved since: no reload


def test_the_poller_carries_a_change_to_the_other_replica(
    tmp_path: Path, models_dir: Path, redis_url: str, admin: dict[str, str]
) -> None:
    a, b = replicas(tmp_path, models_dir, redis_url, poll=0.05)
    with a, b:
        assert (
            a.patch("/admin/catalogue/items/i06", json={"available": False}, headers=admin).status_code == 200
        )
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        while "i06" in ids(b.post("/v1/recommend", json=REQUEST).json()):
            assert time.monotonic() < deadline, "replica B never saw the change"
            time.sleep(0.01)
        assert not any("i06" in items for items in answers(b))
        assert b.get("/v1/catalogue/items/i06").json()["available"] is False
