"""Settings: env prefix, fail-fast validation."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings, load_settings, unknown_variables

# Names that appear in the repository only as examples of a wrong or partial name.
EXAMPLES = {"RECDISTILL_SHADOWRATE", "RECDISTILL_FROBNICATE", "RECDISTILL_X", "RECDISTILL_MODELS"}


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


def test_an_unknown_recdistill_variable_names_the_closest_setting() -> None:
    """Regression: a mistyped RECDISTILL_SHADOWRATE was ignored without a word (the shadow stayed off)."""
    environ = {
        "RECDISTILL_SHADOWRATE": "0.5",  # a dropped separator
        "recdistill_max_kk": "3",  # the settings are case-insensitive, so is the check
        "RECDISTILL_FROBNICATE": "1",  # nothing close
        "RECDISTILL_SHADOW_RATE": "0.1",  # settings
        "recdistill_max_k": "5",
        "RECDISTILL_REQUIRE_ALL_TESTS": "1",  # used by the test scripts, not a setting: no warning
        "RECDISTILL_ML100K_CACHE": "data/cache",
        "PATH": "/usr/bin",  # not ours
    }
    assert unknown_variables(environ) == [
        "RECDISTILL_FROBNICATE: not a setting, ignored",
        "RECDISTILL_SHADOWRATE: not a setting, ignored (did you mean RECDISTILL_SHADOW_RATE?)",
        "recdistill_max_kk: not a setting, ignored (did you mean RECDISTILL_MAX_K?)",
    ]


def test_every_name_the_repository_uses_is_a_setting_or_known_not_to_be_one() -> None:
    """A new script variable with the RECDISTILL_ prefix must join NOT_SETTINGS, or every command warns."""
    root = Path(__file__).resolve().parents[2]
    used: set[str] = set()
    folders = ("app", "core", "recdistill", "training", "bench", "scripts", "tests", ".ci")
    files = [root / "Dockerfile", root / "Makefile", *(p for f in folders for p in (root / f).rglob("*"))]
    for path in files:
        if path.is_file() and path.suffix in {".py", ".sh", ""}:
            used |= set(re.findall(r"\bRECDISTILL_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="ignore")))
    assert {"RECDISTILL_VENV_BIN", "RECDISTILL_SHADOW_RATE"} <= used  # the scan sees scripts and settings
    flagged = unknown_variables(dict.fromkeys(used - EXAMPLES, ""))
    assert flagged == []


def test_load_settings_warns_in_one_line_and_still_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RECDISTILL_SHADOWRATE", "0.5")
    with caplog.at_level(logging.WARNING, logger="app.config"):
        settings = load_settings()
    assert settings.shadow_rate == 0.0  # ignored, as the warning says
    lines = [r.getMessage() for r in caplog.records if "SHADOWRATE" in r.getMessage()]
    assert lines == ["RECDISTILL_SHADOWRATE: not a setting, ignored (did you mean RECDISTILL_SHADOW_RATE?)"]
