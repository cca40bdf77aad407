"""POST /v1/events, GET /v1/users/{id}/history, and the CSV export the retraining pipeline reads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.stores.events_export import export_events


def ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_an_event_changes_the_next_recommendation(client: TestClient) -> None:
    before = client.post("/v1/recommend", json={"user_id": "newcomer", "k": 2}).json()
    assert before["fallback"] == "popular" and ids(before) == ["i05", "i02"]
    r = client.post(
        "/v1/events", json={"user_id": "newcomer", "item_id": "i01", "timestamp": 1000, "event": "view"}
    )
    assert r.status_code == 201 and r.json() == {"accepted": 1, "unknown_items": []}
    after = client.post("/v1/recommend", json={"user_id": "newcomer", "k": 2}).json()
    assert after["fallback"] is None and ids(after) == ["i10", "i07"]  # books now, i01 itself excluded


def test_history_is_most_recent_last_and_appends_to_the_seed(client: TestClient) -> None:
    assert client.get("/v1/users/u0/history").json() == {
        "user_id": "u0",
        "items": [
            {"item_id": "i00", "timestamp": 100, "event": None},
            {"item_id": "i03", "timestamp": 110, "event": None},
        ],
    }
    events = [
        {"user_id": "u0", "item_id": "i06", "timestamp": 120, "event": "cart"},
        {"user_id": "u0", "item_id": "i01", "timestamp": "1970-01-01T00:01:45Z"},  # 105 s: between the seeds
        {"user_id": "u9", "item_id": "brand-new"},
    ]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 201 and r.json() == {"accepted": 3, "unknown_items": ["brand-new"]}
    items = client.get("/v1/users/u0/history").json()["items"]
    assert [(i["item_id"], i["timestamp"], i["event"]) for i in items] == [
        ("i00", 100, None),
        ("i01", 105, None),
        ("i03", 110, None),
        ("i06", 120, "cart"),
    ]
    assert [i["item_id"] for i in client.get("/v1/users/u0/history?limit=2").json()["items"]] == [
        "i03",
        "i06",
    ]
    assert client.get("/v1/users/nobody/history").json() == {"user_id": "nobody", "items": []}


def test_bad_events_are_422_naming_the_field(client: TestClient) -> None:
    cases = [
        ({"item_id": "i01"}, ["body", "EventIn", "user_id"]),
        ({"user_id": "u1", "item_id": ""}, ["body", "EventIn", "item_id"]),
        ({"user_id": "u1", "item_id": "i01", "timestamp": "yesterday"}, ["body", "EventIn", "timestamp"]),
        # What the schema types as neither a date-time nor epoch seconds (the offset is required).
        ({"user_id": "u1", "item_id": "i01", "timestamp": "1700000000"}, ["body", "EventIn", "timestamp"]),
        (
            {"user_id": "u1", "item_id": "i01", "timestamp": "2026-12-01T09:00:00"},
            ["body", "EventIn", "timestamp"],
        ),
        ({"user_id": "u1", "item_id": "i01", "timestamp": True}, ["body", "EventIn", "timestamp"]),
        ({"user_id": "u1", "item_id": "i01", "timestamp": -1}, ["body", "EventIn", "timestamp"]),
    ]
    for payload, loc in cases:
        r = client.post("/v1/events", json=payload)
        assert r.status_code == 422, payload
        assert any(d["loc"][: len(loc)] == loc for d in r.json()["detail"]), r.json()
    r = client.post("/v1/events", json=[])  # the schema says minItems 1
    assert r.status_code == 422 and r.json()["detail"][-1]["type"] == "too_short"


def test_event_timestamps_take_both_documented_forms(client: TestClient) -> None:
    events = [
        {"user_id": "t", "item_id": "i01", "timestamp": 100.9},  # epoch seconds, a fraction dropped
        {"user_id": "t", "item_id": "i02", "timestamp": "1970-01-01T00:03:20+00:00"},
        {"user_id": "t", "item_id": "i03", "timestamp": "1970-01-01T01:05:00+01:00"},  # 300 s
    ]
    assert client.post("/v1/events", json=events).status_code == 201
    items = client.get("/v1/users/t/history").json()["items"]
    assert [(i["item_id"], i["timestamp"]) for i in items] == [("i01", 100), ("i02", 200), ("i03", 300)]
    assert client.get("/v1/users/u0/history?limit=0").status_code == 422


def test_rejected_batch_of_events_stores_nothing(client: TestClient) -> None:
    r = client.post("/v1/events", json=[{"user_id": "z", "item_id": "i01"}, {"user_id": "z", "item_id": 5}])
    assert r.status_code == 422
    assert client.get("/v1/users/z/history").json()["items"] == []


def test_export_writes_only_logged_events_for_the_pipeline(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    client.post("/v1/events", json={"user_id": "u1", "item_id": "i02", "timestamp": 200, "event": "purchase"})
    client.post("/v1/events", json={"user_id": "u7", "item_id": "i09", "timestamp": 150})
    out = tmp_path / "export" / "events.csv"
    assert export_events(settings.history_db, out) == 2  # the 15 seed rows are training data already
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"user_id": "u7", "item_id": "i09", "timestamp": "150", "event": ""},
        {"user_id": "u1", "item_id": "i02", "timestamp": "200", "event": "purchase"},
    ]
    assert export_events(settings.history_db, out, since=180) == 1


def test_export_of_a_missing_database_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite3"
    with pytest.raises(FileNotFoundError, match="nope.sqlite3: no history database"):
        export_events(missing, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
