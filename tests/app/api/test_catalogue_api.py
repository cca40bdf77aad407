"""The live catalogue through the real app (SQLite state): the admin routes, their errors, and the
overlay applied to every answer: both A/B arms, the candidate, the shadow's replay, /v1/compare,
batch, the popular fallback, the filters and the answer's fields.

Tiny catalogue (tests/fixtures/tiny_model.py): history [i00] -> i09, i06, i03, i00, then i01, i02;
prices 5, 10, ..., 50 (i10 unknown, i11 60); category = index % 3 over shoes, books, toys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.request import Answer
from app.engine.recommender import recommend_batch
from app.experiment.assignment import FORCE_ARM_HEADER
from tests.fixtures.tiny_model import build_tiny_version

REQUEST = {"history": ["i00"], "k": 4, "exclude_seen": False}  # -> i09, i06, i03, i00


@pytest.fixture
def client(clients_for: Callable[..., TestClient], models_dir: Path) -> TestClient:
    """The app serving v1, with v2 (ranks the other way round) beside it for the candidate."""
    build_tiny_version(models_dir, "v2", reverse=True, publish=False)
    return clients_for(models_dir)


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def patch(client: TestClient, admin: dict[str, str], item: str, **body: Any) -> Any:
    return client.patch(f"/admin/catalogue/items/{item}", json=body, headers=admin)


def test_an_unavailable_item_leaves_every_answer_and_comes_back(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert ids(client.post("/v1/recommend", json=REQUEST).json()) == ["i09", "i06", "i03", "i00"]
    r = patch(client, admin, "i09", available=False)
    assert r.status_code == 200, r.text
    assert r.json() | {"updated_at": None} == {
        "item_id": "i09", "model_version": "v1", "known": True, "registered": False, "available": False,
        "price": 50.0, "category": "shoes", "fields": {}, "overrides": ["available"], "updated_at": None,
    }  # fmt: skip
    assert ids(client.post("/v1/recommend", json=REQUEST).json()) == ["i06", "i03", "i00", "i01"]
    teacher = client.post("/v1/recommend", json=REQUEST, headers={FORCE_ARM_HEADER: "teacher"}).json()
    assert teacher["arm"] == "teacher" and "i09" not in ids(teacher) and len(ids(teacher)) == 4
    by_user = client.post("/v1/recommend", json={"user_id": "u0", "k": 12}).json()  # u0 saw i00, i03
    assert "i09" not in ids(by_user) and len(ids(by_user)) == 9  # 12 - 2 seen - 1 unavailable
    cold = client.post("/v1/recommend", json={"history": [], "k": 12}).json()
    assert cold["fallback"] == "popular" and "i09" not in ids(cold) and len(ids(cold)) == 11
    batch = client.post("/v1/recommend/batch", json={"requests": [REQUEST, {**REQUEST, "k": 12}]}).json()
    assert all("i09" not in ids(result) for result in batch["results"])
    compare = client.post("/v1/compare", json=REQUEST).json()
    assert "i09" not in ids(compare["student"]) and "i09" not in ids(compare["teacher"])
    assert patch(client, admin, "i09", available=True).status_code == 200
    assert ids(client.post("/v1/recommend", json=REQUEST).json()) == ["i09", "i06", "i03", "i00"]
    assert client.get("/v1/catalogue").json()["items"] == []  # nothing overridden any more: no entry


def test_the_candidate_arm_and_the_shadow_replay_skip_unavailable_items(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.post("/admin/candidate", json={"version": "v2"}, headers=admin).status_code == 200
    start = {"name": "rollout", "arms": "serving_vs_candidate", "candidate_share": 1.0}
    assert client.post("/admin/experiments", json=start, headers=admin).status_code == 201
    assert patch(client, admin, "i00", available=False).status_code == 200
    seen: list[Answer] = []

    async def capture(done: Answer) -> None:
        seen.append(done)

    client.app.state.after_answer.append(capture)  # type: ignore[attr-defined]
    body = client.post("/v1/recommend", json={**REQUEST, "user_id": "someone"}).json()
    assert (body["arm"], body["model_version"]) == ("candidate", "v2")
    assert ids(body) == ["i03", "i06", "i09", "i01"]  # v2 ranks i00 first: it is gone
    candidate = client.app.state.candidate.current  # type: ignore[attr-defined]
    # What the shadow replays for the candidate (app/experiment/shadow.py): the same exclusions.
    (replayed,) = recommend_batch([seen[-1].resolved.student_query_for(candidate)])
    assert "i00" not in candidate.item_ids[replayed.indices].tolist()


def test_price_and_category_changes_drive_filters_and_fields(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert patch(client, admin, "i03", price=99.5, category="garden").status_code == 200
    fields = {**REQUEST, "fields": ["price", "category"]}
    items = client.post("/v1/recommend", json=fields).json()["items"]
    assert [(i["item_id"], i["price"], i["category"]) for i in items] == [
        ("i09", 50.0, "shoes"), ("i06", 35.0, "shoes"), ("i03", 99.5, "garden"), ("i00", 5.0, "shoes"),
    ]  # fmt: skip
    pricey = client.post("/v1/recommend", json={**REQUEST, "filters": {"min_price": 90}}).json()
    assert ids(pricey) == ["i03"]  # trained at 20: filtered on its current price
    garden = client.post("/v1/recommend", json={**REQUEST, "filters": {"categories": ["garden"]}}).json()
    assert ids(garden) == ["i03"]
    shoes = client.post("/v1/recommend", json={**REQUEST, "filters": {"categories": ["shoes"]}}).json()
    assert ids(shoes) == ["i09", "i06", "i00"]
    compare = client.post("/v1/compare", json=fields).json()
    assert compare["student"]["items"][2] | {"score": 0} == {
        "item_id": "i03", "score": 0, "price": 99.5, "category": "garden"
    }  # fmt: skip
    r = patch(client, admin, "i03", price=None)  # null: back to the trained price
    assert (r.json()["price"], r.json()["category"], r.json()["overrides"]) == (20.0, "garden", ["category"])


def test_registered_items_keep_their_metadata_and_are_never_served(
    client: TestClient, admin: dict[str, str]
) -> None:
    new = {"item_id": "sku-new", "price": 12.0, "category": "garden", "fields": {"title": "Spade"}}
    r = client.post("/admin/catalogue/items", json=new, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json() | {"updated_at": None} == {
        "item_id": "sku-new", "model_version": "v1", "known": False, "registered": True, "available": True,
        "price": 12.0, "category": "garden", "fields": {"title": "Spade"}, "overrides": ["price", "category",
        "fields.title"], "updated_at": None,
    }  # fmt: skip
    assert client.post("/admin/catalogue/items", json=new, headers=admin).status_code == 409
    r = client.post("/admin/catalogue/items", json={"item_id": "i01"}, headers=admin)
    assert r.status_code == 409 and "PATCH" in r.json()["detail"]
    assert patch(client, admin, "sku-new", price=11.0, fields={"title": None}).json()["fields"] == {}
    assert client.get("/v1/catalogue/items/sku-new").json()["price"] == 11.0
    answer = client.post("/v1/recommend", json={"history": ["sku-new", "i00"], "k": 12}).json()
    assert answer["unknown_items"] == ["sku-new"] and "sku-new" not in ids(answer)
    overview = client.get("/v1/catalogue").json()
    assert overview["counts"]["registered"] == 1 and [i["item_id"] for i in overview["items"]] == ["sku-new"]
    assert client.delete("/admin/catalogue/items/sku-new", headers=admin).status_code == 200
    assert client.get("/v1/catalogue/items/sku-new").status_code == 404
    assert client.delete("/admin/catalogue/items/sku-new", headers=admin).status_code == 404


def test_bad_changes_are_clear_4xx_and_store_nothing(client: TestClient, admin: dict[str, str]) -> None:
    r = patch(client, admin, "nope", available=False)
    assert r.status_code == 404
    assert "unknown item 'nope'" in r.json()["detail"] and "POST /admin/catalogue/items" in r.json()["detail"]
    for price, kind in ((-1, "greater_than_equal"), ("12", "float_type"), (True, "float_type")):
        r = patch(client, admin, "i01", price=price)
        assert r.status_code == 422, price
        [error] = r.json()["detail"]
        assert (error["loc"], error["type"]) == (["body", "price"], kind)
    json_type = {**admin, "content-type": "application/json"}
    r = client.patch("/admin/catalogue/items/i01", content=b'{"price": NaN}', headers=json_type)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "price"]
    r = patch(client, admin, "i01")
    assert r.status_code == 422 and "nothing to change" in r.json()["detail"][0]["msg"]
    r = patch(client, admin, "i01", fields={"price": "3"})  # a catalogue column of its own
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "fields", "price", "[key]"]
    r = patch(client, admin, "i01", colour="red")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "colour"]
    bulk = {"items": [{"item_id": "i01", "available": False}, {"item_id": "ghost", "price": 1}]}
    r = client.patch("/admin/catalogue/items", json=bulk, headers=admin)
    assert r.status_code == 409 and r.json()["detail"].startswith(  # the catalogue exists: a conflict
        "body.items.1.item_id: unknown item 'ghost'"
    )
    r = client.patch("/admin/catalogue/items", json={"items": [{"item_id": "i01"}]}, headers=admin)
    assert r.status_code == 422 and "nothing to change" in r.json()["detail"][0]["msg"]
    assert client.get("/v1/catalogue").json() | {"loaded_at": None} == {
        "generation": 0, "loaded_at": None, "poll_seconds": 1.0, "items": [],
        "counts": {"unavailable": 0, "price": 0, "category": 0, "fields": 0, "registered": 0},
    }  # fmt: skip
    assert client.patch("/admin/catalogue/items/i01", json={"available": False}).status_code == 401
    bad = {"Authorization": "Bearer not-the-token-at-all"}
    assert (
        client.patch("/admin/catalogue/items/i01", json={"available": False}, headers=bad).status_code == 403
    )


def test_a_bulk_change_is_one_generation(client: TestClient, admin: dict[str, str]) -> None:
    bulk = {
        "items": [{"item_id": f"i0{n}", "available": False} for n in (6, 9)]
        + [{"item_id": "i03", "price": 1}]
    }
    r = client.patch("/admin/catalogue/items", json=bulk, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["generation"] == 1 and [i["available"] for i in r.json()["items"]] == [False, False, True]
    assert ids(client.post("/v1/recommend", json=REQUEST).json()) == ["i03", "i00", "i01", "i02"]
    twice = {
        "items": [
            {"item_id": "i01", "price": 1, "fields": {"a": "x"}},
            {"item_id": "i01", "price": 2, "fields": {"b": "y"}},
        ]
    }
    r = client.patch("/admin/catalogue/items", json=twice, headers=admin)  # in order: the later wins
    assert [(i["price"], i["fields"]) for i in r.json()["items"]] == [(2.0, {"a": "x", "b": "y"})] * 2
    metrics = client.get("/metrics").text
    assert "recdistill_catalogue_generation 2.0" in metrics
    assert 'recdistill_catalogue_entries{kind="unavailable"} 2.0' in metrics


def test_openapi_documents_the_catalogue_routes_and_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    item = paths["/admin/catalogue/items/{item_id}"]
    assert set(item) == {"patch", "delete"}
    assert {"401", "403", "404", "422", "503"} <= set(item["patch"]["responses"])
    assert "Retry-After" in item["patch"]["responses"]["503"]["headers"]
    assert {"201", "409", "503"} <= set(paths["/admin/catalogue/items"]["post"]["responses"])
    assert "503" in paths["/v1/events"]["post"]["responses"]
    assert set(paths["/v1/catalogue/items/{item_id}"]["get"]["responses"]) >= {"200", "404"}
