"""The SQLite backend's failure modes through the app: a full disk and a database locked by another
process. A write that cannot be made durable answers 503 with Retry-After (never a 500), reads keep
answering, readiness says "degraded" while staying 200, and all recovers once the disk has room."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from core.sqlite import connect


def fill_until_refused(post: Callable[[int], Any], limit: int = 400) -> Any:
    """Post (n = 0, 1, ...) until an answer is not 2xx; that answer."""
    for n in range(limit):
        r = post(n)
        if r.status_code >= 300:
            return r
    raise AssertionError(f"no write was refused in {limit} tries")


def test_a_full_disk_refuses_writes_with_503_and_recovers(
    clients_for: Callable[..., TestClient], models_dir: Path, admin: dict[str, str]
) -> None:
    client = clients_for(models_dir, store_retry_seconds=0.05)
    state = client.app.state  # type: ignore[attr-defined]
    # SQLite's own limit on the file's size: past it every write fails with SQLITE_FULL, as on a full disk.
    writer = state.history.inner._writer
    (pages,) = writer.execute("PRAGMA page_count").fetchone()
    writer.execute(f"PRAGMA max_page_count = {pages}")
    events = [{"user_id": "u7", "item_id": "i01", "event": "view", "timestamp": t} for t in range(50)]
    r = fill_until_refused(lambda n: client.post("/v1/events", json=events))
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")
    assert "cannot be written now (OperationalError: database or disk is full)" in r.json()["detail"]
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["store"]["writes"]["ok"] is False and ready.json()["store"]["reads"]["ok"] is True
    by_user = client.post("/v1/recommend", json={"user_id": "u0", "k": 3})
    assert by_user.status_code == 200 and by_user.json()["fallback"] is None  # reads still work
    assert client.get("/v1/users/u0/history").status_code == 200

    catalogue = state.catalogue.store._conn  # the admin writes: the state db, full as well
    (pages,) = catalogue.execute("PRAGMA page_count").fetchone()
    catalogue.execute(f"PRAGMA max_page_count = {pages}")
    fields = {f"f{i}": "x" * 4000 for i in range(8)}
    r = fill_until_refused(
        lambda n: client.post(
            "/admin/catalogue/items", json={"item_id": f"sku{n}", "fields": fields}, headers=admin
        )
    )
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")
    assert "database or disk is full" in r.json()["detail"]

    writer.execute("PRAGMA max_page_count = 1073741823")  # room again
    catalogue.execute("PRAGMA max_page_count = 1073741823")
    time.sleep(0.1)  # past the fail-fast window, so the next write tries the store
    assert client.post("/v1/events", json=events[:1]).status_code == 201
    assert (
        client.post("/admin/catalogue/items", json={"item_id": "sku-late"}, headers=admin).status_code == 201
    )
    assert client.get("/health/ready").json()["status"] == "ready"


def test_a_database_locked_past_the_write_timeout_is_a_503_and_nothing_is_lost(
    clients_for: Callable[..., TestClient], models_dir: Path, tmp_path: Path
) -> None:
    client = clients_for(models_dir, store_write_timeout_ms=300, store_retry_seconds=0.05)
    blocker = connect(tmp_path / "state" / "history.sqlite3")  # another process's writer, as it were
    blocker.execute("BEGIN IMMEDIATE")
    try:
        event = {"user_id": "u7", "item_id": "i04", "event": "cart", "timestamp": 5}
        r = client.post("/v1/events", json=event)
        assert (r.status_code, r.headers["retry-after"]) == (503, "1")
        assert "TimeoutError" in r.json()["detail"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # The refused write was queued behind the lock: it lands once the lock goes (at least once, never lost).
    deadline = time.monotonic() + 30
    while not client.get("/v1/users/u7/history").json()["items"]:
        assert time.monotonic() < deadline, "the queued event never landed"
        time.sleep(0.02)
    time.sleep(0.1)  # past the fail-fast window
    assert client.post("/v1/events", json=event).status_code == 201
    items = client.get("/v1/users/u7/history").json()["items"]
    assert [(i["item_id"], i["event"]) for i in items] == [("i04", "cart"), ("i04", "cart")]


def test_sqlite_operational_errors_are_storage_failures_not_bugs() -> None:
    from app.stores.outage import storage_errors

    assert sqlite3.OperationalError in storage_errors()
    assert sqlite3.IntegrityError not in storage_errors()  # a constraint is a bug or a conflict: not a 503
