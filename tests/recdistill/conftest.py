"""The models folder the `recdistill models` tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

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
