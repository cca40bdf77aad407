"""Regression: NaN / ±Infinity in a request body was a 500 on FastAPI's own body routes.

Python's json accepts the bare tokens NaN, Infinity and -Infinity. The validation error echoed the
value in its `input`, Starlette's JSONResponse cannot encode a non-finite float, and the client got a
500 (with a traceback in the log) instead of a 422 naming the field. Every route must answer 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.errors import json_safe

JSON = {"content-type": "application/json"}


def _errors(client: TestClient, path: str, body: bytes) -> list[dict[str, Any]]:
    r = client.post(path, content=body, headers=JSON)
    assert r.status_code == 422, r.text
    return r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "loc", "kind", "echoed"),
    [
        (
            "/v1/recommend/batch",
            b'{"requests": [{"history": ["i00"]}, {"history": ["x"], "filters": {"min_price": NaN}}]}',
            ["body", "requests", 1, "filters", "min_price"],
            "finite_number",
            "nan",
        ),
        (
            "/v1/recommend/batch",
            b'{"requests": [{"history": ["i00"], "k": Infinity}]}',
            ["body", "requests", 0, "k"],
            "int_type",
            "inf",
        ),
        (
            "/v1/compare",
            b'{"history": ["x"], "filters": {"min_price": NaN}}',
            ["body", "filters", "min_price"],
            "finite_number",
            "nan",
        ),
        (
            "/v1/compare",
            b'{"history": ["x"], "filters": {"max_price": -Infinity}}',
            ["body", "filters", "max_price"],
            "finite_number",
            "-inf",
        ),
        (
            "/v1/feedback",
            b'{"request_id": "r1", "item_id": NaN, "event": "click"}',
            ["body", "item_id"],
            "string_type",
            "nan",
        ),
        (
            "/v1/recommend",
            b'{"history": ["i00"], "filters": {"max_price": Infinity}}',
            ["body", "filters", "max_price"],
            "finite_number",
            "inf",
        ),
    ],
)
def test_a_non_finite_number_is_a_422_naming_the_field(
    client: TestClient, path: str, body: bytes, loc: list[Any], kind: str, echoed: str
) -> None:
    [error] = _errors(client, path, body)
    assert (error["loc"], error["type"], error["input"]) == (loc, kind, echoed)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"user_id": "u9", "item_id": "i01", "timestamp": NaN}', ["body", "EventIn", "timestamp"]),
        (
            b'[{"user_id": "u9", "item_id": "i01", "timestamp": 5}, '
            b'{"user_id": "u9", "item_id": "i02", "timestamp": Infinity}]',
            ["body", "list[EventIn]", 1, "timestamp"],
        ),
    ],
)
def test_a_non_finite_event_timestamp_is_a_422_and_stores_nothing(
    client: TestClient, body: bytes, loc: list[Any]
) -> None:
    errors = _errors(client, "/v1/events", body)
    at_field = [e for e in errors if e["loc"][: len(loc)] == loc]
    assert at_field and all(e["input"] in ("nan", "inf") for e in at_field)  # spelled out, not a 500
    assert {e["type"] for e in at_field} >= {"finite_number"}
    assert client.get("/v1/users/u9/history").json()["items"] == []  # the valid event is not kept either


def test_a_non_finite_number_nested_in_an_echoed_input_is_spelled_out(client: TestClient) -> None:
    """The echo can be a whole object or list (an unknown field, a list that should be an object)."""
    [error] = _errors(client, "/v1/recommend", b'{"zz": {"a": [1.5, NaN, -Infinity]}}')
    assert (error["loc"], error["type"], error["input"]) == (
        ["body", "zz"],
        "extra_forbidden",
        {"a": [1.5, "nan", "-inf"]},
    )
    [error] = _errors(
        client, "/v1/feedback", b'{"request_id": "r", "item_id": "i", "event": "click", "x": [NaN]}'
    )
    assert (error["loc"], error["input"]) == (["body", "x"], ["nan"])


def test_json_safe_replaces_only_non_finite_floats() -> None:
    value = {"a": (1, 2.5, float("nan")), "b": [{"c": float("inf")}, "NaN", None, True], "d": -float("inf")}
    assert json_safe(value) == {"a": [1, 2.5, "nan"], "b": [{"c": "inf"}, "NaN", None, True], "d": "-inf"}
