"""The floor beside /v1/recommend: an empty endpoint that parses the same body, served the same way."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import bench.floor
from bench.floor import ROUTE, floor_app


def test_the_floor_parses_the_recommend_body_and_answers_nothing() -> None:
    with TestClient(floor_app()) as client:
        ok = client.post(ROUTE, json={"history": ["item1", "item2"], "k": 10})
        assert ok.status_code == 200 and ok.json() == {}
        bad = client.post(ROUTE, json={"history": ["item1"], "k": "ten"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "k"]
        assert client.get("/health/ready").status_code == 200


def test_the_floor_runs_under_the_services_uvicorn_options(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda application, **kw: captured.update(kw))
    bench.floor.serve(None, "127.0.0.1", 9124)
    assert captured["loop"] == "uvloop" and captured["http"] == "httptools"
    assert captured["access_log"] is False and captured["port"] == 9124
