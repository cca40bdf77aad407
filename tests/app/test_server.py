"""The two ways to start the service: `serve()` (recdistill serve) and `uvicorn app.main:app`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import app.server


def test_serve_runs_uvicorn_with_uvloop_httptools_and_no_access_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(
        app.server.uvicorn, "run", lambda application, **kw: captured.update(kw, app=application)
    )
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "h.sqlite3"))
    app.server.serve(tmp_path / "models", "0.0.0.0", 9123)
    assert captured["loop"] == "uvloop" and captured["http"] == "httptools"
    assert captured["access_log"] is False and (captured["host"], captured["port"]) == ("0.0.0.0", 9123)
    assert captured["app"].state.settings.models_dir == tmp_path / "models"
    assert captured["app"].state.store.current is None  # nothing is loaded before the lifespan runs


def test_serve_with_an_unreachable_redis_says_so_in_one_line_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: the lifespan raised RedisUnavailable inside uvicorn, which printed a traceback."""
    import socket

    from recdistill.cli import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(app.server.uvicorn, "run", lambda *a, **kw: pytest.fail("uvicorn must not start"))
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "h.sqlite3"))
    monkeypatch.setenv("RECDISTILL_HISTORY_BACKEND", "redis")
    monkeypatch.setenv("RECDISTILL_REDIS_URL", f"redis://:hunter2hunter2@127.0.0.1:{port}/0")
    assert main(["serve", "--models", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recdistill serve: error: redis://:***@127.0.0.1:{port}/0: cannot reach redis")
    assert len(err.strip().splitlines()) == 1 and "hunter2" not in err and "Traceback" not in err


def test_module_level_app_is_built_lazily_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECDISTILL_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "h.sqlite3"))
    module = importlib.import_module("app.main")
    assert "app" not in vars(module)  # importing builds nothing
    with TestClient(module.app) as client:  # what `uvicorn app.main:app` does: getattr(module, "app")
        assert client.get("/health/ready").json()["model_version"] == "v1"
