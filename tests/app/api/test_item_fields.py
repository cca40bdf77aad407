"""Catalogue columns in answers, opt-in per request (`fields`): category and price from the version's
catalogue, extra columns (title, url) from its item_extra file; an unknown name is a 422 naming it;
without `fields` the answer stays ids and scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.fixtures.tiny_model import build_version, tiny_arrays

TITLES = [f"Item {i}" for i in range(12)]
URLS = [f"https://shop.example/{i}" if i != 6 else "" for i in range(12)]  # i06 has no url
REQUEST = {"history": ["i00"], "k": 4, "exclude_seen": False}  # -> i09, i06, i03, i00


def _client(settings_for: Callable[..., Settings], tmp_path: Path) -> TestClient:
    models = tmp_path / "models"
    build_version(models, "v1", tiny_arrays(), item_extra={"title": TITLES, "url": URLS})
    return TestClient(create_app(settings_for(models)))


def test_fields_are_opt_in(settings_for: Callable[..., Settings], tmp_path: Path) -> None:
    with _client(settings_for, tmp_path) as client:
        lean = client.post("/v1/recommend", json=REQUEST).json()["items"]
        assert all(set(item) == {"item_id", "score"} for item in lean)
        body = {**REQUEST, "fields": ["category", "price", "title", "url"]}
        items = client.post("/v1/recommend", json=body).json()["items"]
        # tiny catalogue: category = index % 3 over shoes/books/toys, price 5 * (index + 1)
        assert [(i["item_id"], i["category"], i["price"], i["title"]) for i in items] == [
            ("i09", "shoes", 50.0, "Item 9"),
            ("i06", "shoes", 35.0, "Item 6"),
            ("i03", "shoes", 20.0, "Item 3"),
            ("i00", "shoes", 5.0, "Item 0"),
        ]
        assert [i["url"] for i in items] == [
            "https://shop.example/9",
            None,
            "https://shop.example/3",
            "https://shop.example/0",
        ]
        assert client.get("/v1/models").json()["item_fields"] == ["category", "price", "title", "url"]


def test_unknown_field_is_a_422_naming_it(settings_for: Callable[..., Settings], tmp_path: Path) -> None:
    with _client(settings_for, tmp_path) as client:
        r = client.post("/v1/recommend", json={**REQUEST, "fields": ["price", "colour"]})
        assert r.status_code == 422
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", "fields", 1] and "'colour'" in error["msg"]
        enum = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
        assert enum["properties"]["fields"]["anyOf"][0]["items"]["enum"] == [
            "category",
            "price",
            "title",
            "url",
        ]
