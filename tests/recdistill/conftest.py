"""The models folder the `recdistill models` tests share, and the settings of a service they talk to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from tests.fixtures.model_versions import METRICS
from tests.fixtures.tiny_model import build_tiny_version


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """v1 (older), then v2 (LATEST) with offline metrics; the settings of a one-replica service."""
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "history.sqlite3"))
    monkeypatch.delenv("RECDISTILL_HISTORY_BACKEND", raising=False)
    models = tmp_path / "models"
    build_tiny_version(models, "v1", created_at="2026-11-27T00:00:00Z")
    build_tiny_version(models, "v2", reverse=True, metrics=METRICS, created_at="2026-11-28T00:00:00Z")
    return models


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """settings_for(models_dir, **overrides): a one-replica service's Settings, history in tmp_path."""

    def make(models_dir: Path, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "models_dir": models_dir,
            "history_db": tmp_path / "state" / "history.sqlite3",
            "batch_max_wait_ms": 0.0,
            "reload_poll_seconds": 0.0,
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]

    return make
