"""The lean /v1/recommend path (the event loop is the bottleneck under load): it bypasses FastAPI's router and body handling, so these
tests pin that it still answers exactly like a FastAPI route with a `RecommendRequest` body would:
the same 422 bodies, 413 and 503, the same OpenAPI description, the same metrics."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.schemas import RecommendRequest
from app.config import Settings
from app.main import create_app

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def reference() -> TestClient:
    """A plain FastAPI route with the body as a parameter: the behaviour the hot path must match."""
    ref = FastAPI()

    @ref.post("/v1/recommend")
    async def recommend(body: RecommendRequest) -> dict[str, str]:
        return {"ok": "yes"}

    return TestClient(ref)


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"k": 3', JSON),  # malformed: json_invalid at character 7
        (b"", JSON),  # empty: missing
        (b"[1]", JSON),  # not an object
        (b"null", JSON),
        (b'"text"', JSON),
        (b'{"k": "x", "history": [""], "zzz": 1}', JSON),  # several errors, in FastAPI's order
        (b'{"filters": {"min_price": 3, "max_price": 1}}', JSON),  # an empty price range: valid, no item
        (b'{"k": 2}', {"content-type": "text/plain"}),  # not JSON: never parsed
        (b'{"k": 2}', {}),  # no content type: never parsed
        (b'{"k": 2}', {"content-type": "application/vnd.api+json"}),  # +json is JSON
        (b"\xff\xfe", JSON),  # not UTF-8
    ],
)
def test_422_bodies_are_exactly_fastapis(
    client: TestClient, reference: TestClient, content: bytes, headers: dict[str, str]
) -> None:
    ours = client.post("/v1/recommend", content=content, headers=headers)
    theirs = reference.post("/v1/recommend", content=content, headers=headers)
    if theirs.status_code == 200:
        assert ours.status_code == 200, ours.text
    else:
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_malformed_json_names_the_position_as_fastapi_does(client: TestClient) -> None:
    r = client.post("/v1/recommend", content=b'{"k": 3', headers=JSON)
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {
                "type": "json_invalid",
                "loc": ["body", 7],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting ',' delimiter"},
            }
        ]
    }


def test_openapi_still_documents_the_body_and_the_422(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/recommend"]["post"]
    assert op["requestBody"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecommendRequest"}}},
        "required": True,
    }
    assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HTTPValidationError"
    }
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendResponse"
    }
    assert {"RecommendRequest", "HTTPValidationError"} <= set(spec["components"]["schemas"])


def test_other_methods_on_the_path_still_reach_the_router(client: TestClient) -> None:
    r = client.get("/v1/recommend")
    assert r.status_code == 405
    assert 'endpoint="/v1/recommend",method="GET",status="405"' in client.get("/metrics").text


def test_no_model_is_503_with_retry_after(tmp_path: Path, settings_for: Callable[..., Settings]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with TestClient(create_app(settings_for(models))) as client:
        r = client.post("/v1/recommend", content=b"not even json", headers=JSON)  # 503 before the body
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json() == {"detail": "no model loaded yet"}


def test_the_heap_is_frozen_while_serving_and_released_at_shutdown(settings: Settings) -> None:
    """Regression (found under the service benchmark): a full GC pass over the loaded app took ~40 ms on the loop."""
    before = gc.get_freeze_count()
    with TestClient(create_app(settings)) as client:
        assert gc.get_freeze_count() > before
        assert client.post("/v1/recommend", json={"history": ["i00"], "k": 2}).status_code == 200
    assert gc.get_freeze_count() == 0


def test_a_non_finite_number_is_a_422_not_a_500(client: TestClient, reference: TestClient) -> None:
    """FastAPI's own route answers 500 here (the error echoes NaN, which JSON cannot carry)."""
    body = b'{"filters": {"min_price": NaN}}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        reference.post("/v1/recommend", content=body, headers=JSON)
    r = client.post("/v1/recommend", content=body, headers=JSON)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert (error["loc"], error["type"], error["input"]) == (
        ["body", "filters", "min_price"],
        "finite_number",
        "nan",
    )
