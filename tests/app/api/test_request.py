"""app/api/request.py, the one request path: each request is resolved once (history, arm, prepared
query), and everything after it (the batcher, the answer, the after-answer hooks, /v1/compare)
takes that one object."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.request import Answer


def _count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    original = getattr(obj, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counting)
    return calls


def test_compare_reads_the_stored_history_once_for_both_sides(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: /v1/compare read the user's history once per side."""
    client.post("/v1/events", json=[{"user_id": "h1", "item_id": "i00", "timestamp": 10}])
    reads = _count_calls(monkeypatch, client.app.state.history, "history")  # type: ignore[attr-defined]
    body = client.post("/v1/compare", json={"user_id": "h1", "k": 3}).json()
    assert len(reads) == 1
    assert body["student"]["fallback"] is None and body["teacher"]["fallback"] is None  # both used it


def test_the_arm_is_assigned_once_and_the_hooks_get_the_same_resolved_request(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the arm was computed twice per request (for the answer, then for the served log)."""
    state = client.app.state  # type: ignore[attr-defined]
    assigned = _count_calls(monkeypatch, state.experiment.experiment.__class__, "assign")
    seen: list[Answer] = []

    async def record(done: Answer) -> None:
        seen.append(done)

    state.after_answer.append(record)
    r = client.post("/v1/recommend", json={"user_id": "u1", "history": ["i00"], "k": 2})
    assert r.status_code == 200 and len(assigned) == 1
    (done,) = seen
    assert done.response == r.json()
    assert done.resolved.arm == r.json()["arm"] and done.resolved.assignment.unit == "user:u1"
    assert done.resolved.history == ["i00"] and done.resolved.query.k == 2
    served = state.experiment.feedback.lookup(r.json()["request_id"])
    assert (served.arm, served.unit) == (done.resolved.arm, "user:u1")  # the log took the same assignment


def test_query_for_switches_only_the_side(client: TestClient) -> None:
    import asyncio

    from starlette.requests import Request

    from app.api.request import resolve
    from app.api.schemas import RecommendRequest

    app = client.app
    scope = {"type": "http", "app": app, "headers": [], "method": "POST", "path": "/v1/compare"}
    body = RecommendRequest(history=["i00"], k=2, filters={"exclude_items": ["i09"]})  # type: ignore[arg-type]
    model = app.state.store.current  # type: ignore[attr-defined]
    resolved = client.portal.call(resolve, Request(scope), body, model, ("body",), "student")  # type: ignore[union-attr]
    teacher = resolved.query_for("teacher")
    assert resolved.query_for("student") is resolved.query
    assert teacher.side == "teacher" and teacher.k == 2
    assert teacher.exclude.tolist() == resolved.query.exclude.tolist()  # filters and exclusions unchanged
    assert asyncio.iscoroutinefunction(resolve)
