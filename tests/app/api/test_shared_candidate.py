"""The admin-set candidate lives in the shared state beside the pin: it survives a restart (the file
`CANDIDATE` beside LATEST), two replicas on one real redis-server agree on it (the key
`<prefix>models:candidate`, followed by the reload poller), and RECDISTILL_CANDIDATE_VERSION is the
default while none is stored. `/v1/models` says which (`candidate_source`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.stores.pins import CANDIDATE_FILE
from tests.app.conftest import make_settings
from tests.fixtures.tiny_model import build_tiny_version
from tests.redis_server import redis_server


@pytest.fixture
def versions(models_dir: Path) -> Path:
    """v1 published (LATEST); v2 and v3 beside it, not published."""
    build_tiny_version(models_dir, "v2", reverse=True, publish=False)
    build_tiny_version(models_dir, "v3", publish=False)
    return models_dir


def candidate(client: TestClient) -> tuple[str | None, str | None]:
    body = client.get("/v1/models").json()
    held = body["candidate"]["version"] if body["candidate"] else None
    return held, body["candidate_source"]


def wait_for(client: TestClient, expected: tuple[str | None, str | None]) -> None:
    for _ in range(400):  # bounded poll of the outcome; no timing is asserted
        if candidate(client) == expected:
            return
        time.sleep(0.025)
    assert candidate(client) == expected


def test_an_admin_set_candidate_survives_a_restart(tmp_path: Path, versions: Path, admin: dict) -> None:
    settings = make_settings(tmp_path, versions)
    with TestClient(create_app(settings)) as client:
        assert candidate(client) == (None, None)
        r = client.post("/admin/candidate", json={"version": "v2"}, headers=admin)
        assert r.status_code == 200 and r.json()["candidate_source"] == "shared"
        assert (versions / CANDIDATE_FILE).is_file()  # beside LATEST, like PINNED
    with TestClient(create_app(settings)) as client:
        assert candidate(client) == ("v2", "shared")
        assert client.delete("/admin/candidate", headers=admin).json()["candidate"] is None
    assert not (versions / CANDIDATE_FILE).exists()
    with TestClient(create_app(settings)) as client:
        assert candidate(client) == (None, None)


def test_the_setting_is_the_default_while_none_is_stored(tmp_path: Path, versions: Path, admin: dict) -> None:
    with TestClient(create_app(make_settings(tmp_path, versions, candidate_version="v2"))) as client:
        assert candidate(client) == ("v2", "setting")
        assert client.post("/admin/candidate", json={"version": "v3"}, headers=admin).status_code == 200
        assert candidate(client) == ("v3", "shared")
        r = client.delete("/admin/candidate", headers=admin)  # cleared: the setting applies again
        assert r.status_code == 200
        assert (r.json()["candidate"], r.json()["previous"], r.json()["candidate_source"]) == (
            "v2",
            "v3",
            "setting",
        )
        assert candidate(client) == ("v2", "setting")


def test_a_refused_candidate_is_not_stored(tmp_path: Path, versions: Path, admin: dict) -> None:
    with TestClient(create_app(make_settings(tmp_path, versions))) as client:
        assert client.post("/admin/candidate", json={"version": "v9"}, headers=admin).status_code == 409
        assert not (versions / CANDIDATE_FILE).exists()
        assert candidate(client) == (None, None)
        assert "v9" in client.get("/v1/models").json()["candidate_error"]


def test_an_unreadable_stored_candidate_keeps_the_current_one(
    tmp_path: Path, versions: Path, admin: dict
) -> None:
    settings = make_settings(tmp_path, versions, reload_poll_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        assert client.post("/admin/candidate", json={"version": "v2"}, headers=admin).status_code == 200
        (versions / CANDIDATE_FILE).write_text("not json")
        for _ in range(400):
            error = client.get("/v1/models").json()["candidate_error"]
            if error:
                break
            time.sleep(0.025)
        assert error and CANDIDATE_FILE in error and "not a candidate" in error
        assert candidate(client) == ("v2", "shared")  # never "no candidate" by accident


@pytest.fixture
def replicas(tmp_path: Path, versions: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Replicas A and B: same models/, own local dirs, one Redis, polling; B has a candidate setting."""
    with redis_server(tmp_path / "redis") as url:
        shared: dict[str, Any] = {"history_backend": "redis", "redis_url": url, "reload_poll_seconds": 0.05}
        a = make_settings(tmp_path / "a", versions, **shared)
        b = make_settings(tmp_path / "b", versions, candidate_version="v3", **shared)
        with TestClient(create_app(a)) as client_a, TestClient(create_app(b)) as client_b:
            yield client_a, client_b


def test_two_replicas_on_one_redis_agree_on_the_candidate(
    replicas: tuple[TestClient, TestClient], versions: Path, admin: dict
) -> None:
    a, b = replicas
    assert candidate(a) == (None, None) and candidate(b) == ("v3", "setting")
    assert a.post("/admin/candidate", json={"version": "v2"}, headers=admin).status_code == 200
    assert candidate(a) == ("v2", "shared")
    wait_for(b, ("v2", "shared"))  # B's poller read the key A wrote
    assert not (versions / CANDIDATE_FILE).exists()  # in Redis: the volume may be read-only
    r = b.delete("/admin/candidate", headers=admin)
    assert r.status_code == 200 and r.json()["candidate"] == "v3"  # B's own default
    wait_for(a, (None, None))  # A has no default: no candidate
    assert candidate(b) == ("v3", "setting")


def test_a_candidate_set_on_one_replica_is_served_by_the_others_experiment(
    replicas: tuple[TestClient, TestClient], admin: dict
) -> None:
    """An A/B started on B after A set the candidate serves A's candidate."""
    a, b = replicas
    assert a.post("/admin/candidate", json={"version": "v2"}, headers=admin).status_code == 200
    wait_for(b, ("v2", "shared"))
    start = {"name": "v2-rollout", "arms": "serving_vs_candidate", "candidate_share": 1.0}
    r = b.post("/admin/experiments", json=start, headers=admin)
    assert r.status_code == 201 and r.json()["pair"]["name"] == "serving v1 vs candidate v2"
    body = b.post("/v1/recommend", json={"history": ["i00"], "k": 4, "user_id": "u1"}).json()
    assert (body["arm"], body["model_version"]) == ("candidate", "v2")
