"""`recdistill serve`: run the app under uvicorn with uvloop + httptools and no access log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn

from app.config import Settings, load_settings
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


def reach_shared_store(settings: Settings) -> None:
    """With RECDISTILL_HISTORY_BACKEND=redis, ping it before serving: RedisUnavailable, one line.

    A replica that starts while Redis is down cannot read the pin or the candidate every replica
    shares, and it never guesses (it would not fall back to LATEST on its own while running either), so
    it does not start. Checked here, the operator reads one line naming the URL and the CLI exits 2;
    raised from inside the lifespan it was uvicorn's traceback. Once started, a replica rides out a
    Redis outage (docs/operations.md, "When the store is down")."""
    if settings.history_backend == "redis" and settings.redis_url is not None:
        from app.stores.redis_client import sync_client

        sync_client(settings.redis_url.get_secret_value(), settings.store_read_timeout_ms / 1000.0).close()


def serve(models_dir: Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted. Settings come from RECDISTILL_* env; `models_dir` overrides theirs.
    A bad setting raises SettingsError (one line naming the variable) before anything starts, and an
    unreachable shared store RedisUnavailable (one line naming its URL)."""
    settings = load_settings() if models_dir is None else load_settings(models_dir=Path(models_dir))
    reach_shared_store(settings)
    uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options(settings.log_level))
