"""`recdistill serve`: run the app under uvicorn with uvloop + httptools and no access log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn

from app.config import load_settings
from app.main import create_app


def uvicorn_options(log_level: str) -> dict[str, Any]:
    """How the service runs under uvicorn; bench/floor.py serves its empty endpoint the same way, so
    the two differ only in what the route does."""
    return {
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }


def serve(models_dir: Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted. Settings come from RECDISTILL_* env; `models_dir` overrides theirs.
    A bad setting raises SettingsError (one line naming the variable) before anything starts."""
    settings = load_settings() if models_dir is None else load_settings(models_dir=Path(models_dir))
    uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options(settings.log_level))
