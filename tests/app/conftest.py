"""Fixtures for the service tests: a tiny published model in tmp_path and the real app around it,
with its lifespan running (TestClient as a context manager)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.fixtures.tiny_model import build_tiny_version

ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """models/ with the tiny version v1 published (LATEST = v1)."""
    models = tmp_path / "models"
    build_tiny_version(models, "v1")
    return models


def make_settings(tmp_path: Path, models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models_dir": models_dir,
        "history_db": tmp_path / "state" / "history.sqlite3",
        "admin_token": ADMIN_TOKEN,
        "batch_max_wait_ms": 0.0,
        "reload_poll_seconds": 0.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path, models_dir)


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """settings_for(models_dir, **overrides): Settings with this test's tmp history database."""
    return lambda models_dir, **overrides: make_settings(tmp_path, models_dir, **overrides)


@pytest.fixture
def clients_for(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """clients_for(models_dir, **overrides): a started app (lifespan running) per call, all closed
    at the end of the test; for tests that need several apps or settings that differ per client."""
    clients: list[TestClient] = []

    def make(models_dir: Path, **overrides: object) -> TestClient:
        client = TestClient(create_app(settings_for(models_dir, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
