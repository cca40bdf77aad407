"""Two app instances on one real redis-server agree on the pin: set on one replica, the other serves
it too and neither follows LATEST; unpinned on the other, both follow LATEST again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.stores.pins import PIN_FILE
from tests.app.conftest import make_settings
from tests.fixtures.tiny_model import build_tiny_version
from tests.redis_server import redis_server


@pytest.fixture
def replicas(tmp_path: Path, models_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Replicas A and B: same models/ (v1, and v2 = LATEST), own local dirs, one Redis, polling."""
    build_tiny_version(models_dir, "v2", reverse=True)
    with redis_server(tmp_path / "redis") as url:
        shared: dict[str, Any] = {"history_backend": "redis", "redis_url": url, "reload_poll_seconds": 0.05}
        a = make_settings(tmp_path / "a", models_dir, **shared)
        b = make_settings(tmp_path / "b", models_dir, **shared)
        with TestClient(create_app(a)) as client_a, TestClient(create_app(b)) as client_b:
            yield client_a, client_b


def served(client: TestClient) -> tuple[str, str]:
    body = client.get("/v1/models").json()
    return body["served_version"], body["served_because"]


def wait_for(client: TestClient, expected: tuple[str, str]) -> None:
    for _ in range(400):  # bounded poll of the outcome; no timing is asserted
        if served(client) == expected:
            return
        time.sleep(0.025)
    assert served(client) == expected


def test_a_pin_set_on_one_replica_holds_on_both(
    replicas: tuple[TestClient, TestClient], models_dir: Path, admin: dict
) -> None:
    a, b = replicas
    assert served(a) == served(b) == ("v2", "latest")
    r = a.post("/admin/models/v1/pin", headers=admin)
    assert r.status_code == 200 and r.json()["served_version"] == "v1"
    wait_for(b, ("v1", "pinned"))
    assert b.get("/v1/models").json()["pinned"]["version"] == "v1"
    assert not (models_dir / PIN_FILE).exists()  # the pin lives in Redis (the volume may be read-only)
    build_tiny_version(models_dir, "v3")  # a new LATEST under the pin
    for _ in range(20):  # many polls on both replicas
        assert served(a) == served(b) == ("v1", "pinned")
        time.sleep(0.025)
    assert b.post("/admin/unpin", headers=admin).status_code == 200
    wait_for(a, ("v3", "latest"))
    wait_for(b, ("v3", "latest"))


def test_the_cli_pins_every_replica_through_redis(
    replicas: tuple[TestClient, TestClient], models_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`recdistill models rollback` run with the replicas' environment writes the Redis pin."""
    from recdistill.cli import main

    a, b = replicas
    url = a.app.state.settings.redis_url.get_secret_value()  # type: ignore[attr-defined]
    monkeypatch.setenv("RECDISTILL_HISTORY_BACKEND", "redis")
    monkeypatch.setenv("RECDISTILL_REDIS_URL", url)
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "cli" / "h.sqlite3"))
    assert main(["models", "rollback", "--models", str(models_dir)]) == 0  # LATEST v2 -> pin v1
    wait_for(a, ("v1", "pinned"))
    wait_for(b, ("v1", "pinned"))
    assert not (models_dir / PIN_FILE).exists()
    assert main(["models", "unpin", "--models", str(models_dir)]) == 0
    wait_for(a, ("v2", "latest"))
    wait_for(b, ("v2", "latest"))
