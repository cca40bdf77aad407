"""Settings: env prefix, fail-fast validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_settings_come_from_recdistill_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECDISTILL_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("RECDISTILL_MAX_K", "50")
    monkeypatch.setenv("RECDISTILL_ADMIN_TOKEN", "a-long-enough-secret")
    s = Settings()
    assert s.models_dir == tmp_path / "m" and s.max_k == 50
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "a-long-enough-secret"
    assert "a-long-enough-secret" not in repr(s)


def test_admin_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECDISTILL_ADMIN_TOKEN", raising=False)
    assert Settings().admin_token is None


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("admin_token", "short", "at least 16 characters"),
        ("max_k", 0, "max_k"),
        ("max_history", 999, "max_history"),
        ("intra_op_threads", 0, "intra_op_threads"),
        ("batch_max_wait_ms", -1, "batch_max_wait_ms"),
        ("history_synchronous", "OFF", "history_synchronous"),
    ],
)
def test_bad_settings_fail_fast(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_history_db_inside_models_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError, match="RECDISTILL_HISTORY_DB must not live directly inside RECDISTILL_MODELS_DIR"
    ):
        Settings(models_dir=tmp_path, history_db=tmp_path / "h.sqlite3")


def test_retrieval_override_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().retrieval == "manifest"
    monkeypatch.setenv("RECDISTILL_RETRIEVAL", "exact")
    assert Settings().retrieval == "exact"
    monkeypatch.setenv("RECDISTILL_RETRIEVAL", "hnsw")  # the index kind is the manifest's, not a setting
    with pytest.raises(ValidationError, match="retrieval"):
        Settings()
