"""The `backend` fixture of the store contract tests: every test that takes it runs once against SQLite
(a folder in tmp_path) and once against a real redis-server on loopback (one per module, emptied
before each test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import redis_server

BACKENDS = ("sqlite", "redis")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """("sqlite", folder) or ("redis", url of an emptied server)."""
    if request.param == "sqlite":
        return "sqlite", tmp_path
    url = request.getfixturevalue("redis_url")
    import redis

    redis.Redis.from_url(url).flushall()
    return "redis", url
