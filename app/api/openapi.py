"""The OpenAPI document the service keeps exactly: error statuses per route, and the limits that come
from Settings written into the generated schema.

Pydantic models are built once per process, so a limit set by the environment (max_k, max_history,
max_batch_requests, max_events) cannot live in their Field constraints; `install_openapi` writes it
into each app's schema instead, where the request checks of `app.api.request` enforce the same
numbers. Every status a route can return is declared with `errors(...)` on the route itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.schemas import ErrorDetail
from app.config import Settings

_WHY = {
    400: "The body could not be read (not UTF-8, or not parseable at all)",
    401: "No bearer token",
    403: "The admin API is disabled, or the token is wrong",
    404: "A named thing does not exist (a category of the served model, a served request id, a model version)",
    409: "The request conflicts with what is stored (a refused version, no version to roll back to, a pin that cannot be read or written, an item not in the served answer)",
    413: "The body exceeds RECDISTILL_MAX_BODY_BYTES",
    503: "No model version is loaded yet, or the shared store cannot be read or make the write durable "
    "now: nothing was stored; retry after `Retry-After` seconds",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its reason and the `{"detail": "..."}` body."""
    return {
        code: {
            "model": ErrorDetail,
            "description": _WHY[code],
            **({"headers": _RETRY_AFTER} if code == 503 else {}),
        }
        for code in codes
    }


def _array_branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The array schema inside `prop` (it may be `anyOf: [array, null]`)."""
    if prop.get("type") == "array":
        return prop
    for option in prop.get("anyOf", []):
        if option.get("type") == "array":
            return option
    raise KeyError(f"no array schema in {prop}")


def apply_settings(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write the settings' limits into a generated schema (in place); returns it."""
    components = schema["components"]["schemas"]
    recommend = components["RecommendRequest"]["properties"]
    recommend["k"]["maximum"] = settings.max_k
    _array_branch(recommend["history"])["maxItems"] = settings.max_history
    _array_branch(components["BatchRecommendRequest"]["properties"]["requests"])["maxItems"] = (
        settings.max_batch_requests
    )
    events = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    _array_branch(events)["maxItems"] = settings.max_events
    return schema


def apply_item_fields(schema: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The served version's catalogue columns as the enum of `RecommendRequest.fields` (in place):
    what a request may name depends on the version, so the schema is rebuilt after each swap."""
    if fields is not None:
        recommend = schema["components"]["schemas"]["RecommendRequest"]["properties"]
        items = _array_branch(recommend["fields"])["items"]
        items.pop("minLength", None), items.pop("maxLength", None)
        items["enum"] = list(fields)
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Have `app.openapi()` (and /openapi.json) return the schema with this app's limits and the
    served version's item fields (`app.state.store`; the lifespan clears the cache on each swap)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            model = app.state.store.current
            fields = None if model is None else list(model.item_fields)
            app.openapi_schema = apply_item_fields(apply_settings(schema, settings), fields)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
