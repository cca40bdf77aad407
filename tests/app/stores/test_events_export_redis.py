"""`recdistill events export` on both history backends: the Redis the replicas share (a real
redis-server) gives the same CSV as SQLite for the same events (regression: the command read SQLite
only, so the retraining loop broke with the Redis set-up of docs/operations.md)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.stores.events_export import export_events, export_events_redis
from app.stores.history_redis import RedisHistoryStore
from app.stores.history_sqlite import SqliteHistoryStore
from app.stores.records import Interaction
from recdistill.cli import main
from tests.redis_server import redis_server

EVENTS = [
    Interaction("u1", "i02", 200, "purchase"),
    Interaction("u7", "i09", 150, None),
    Interaction("u1", "i03", 200, "view"),  # same second as the purchase: arrival order kept
    Interaction("u2", "i01", 90, "view"),
]
EXPECTED = [
    {"user_id": "u2", "item_id": "i01", "timestamp": "90", "event": "view"},
    {"user_id": "u7", "item_id": "i09", "timestamp": "150", "event": ""},
    {"user_id": "u1", "item_id": "i02", "timestamp": "200", "event": "purchase"},
    {"user_id": "u1", "item_id": "i03", "timestamp": "200", "event": "view"},
]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-export")) as url:
        yield url


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


async def _fill(store: RedisHistoryStore | SqliteHistoryStore) -> None:
    seed = np.array(["u1", "u9"]), np.array(["i05", "i06"]), np.array([10, 20])
    store.seed_from_arrays("v1", *seed)  # training rows: never exported
    await store.append(EVENTS)
    await store.close()


def test_redis_export_matches_sqlite(redis_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(RedisHistoryStore(redis_url, "exp1:")))
    asyncio.run(_fill(SqliteHistoryStore(tmp_path / "history.sqlite3")))
    assert export_events_redis(redis_url, "exp1:", tmp_path / "redis.csv") == 4
    assert export_events(tmp_path / "history.sqlite3", tmp_path / "sqlite.csv") == 4
    assert _rows(tmp_path / "redis.csv") == _rows(tmp_path / "sqlite.csv") == EXPECTED
    assert export_events_redis(redis_url, "exp1:", tmp_path / "late.csv", since=150) == 3
    assert export_events_redis(redis_url, "other:", tmp_path / "none.csv") == 0  # prefixes stay apart


def test_cli_exports_from_the_backend_the_settings_select(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_fill(RedisHistoryStore(redis_url, "exp2:")))
    monkeypatch.setenv("RECDISTILL_HISTORY_BACKEND", "redis")
    monkeypatch.setenv("RECDISTILL_REDIS_URL", redis_url)
    monkeypatch.setenv("RECDISTILL_REDIS_PREFIX", "exp2:")
    out = tmp_path / "events.csv"
    assert main(["events", "export", "--out", str(out)]) == 0
    assert _rows(out) == EXPECTED
    assert "4 events from redis" in capsys.readouterr().out
