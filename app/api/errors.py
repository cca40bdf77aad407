"""422s in FastAPI's own shape: built by hand for checks that need settings or the loaded model, and
made JSON-safe for every route (a NaN echoed back must not turn a 422 into a 500)."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


def invalid(
    loc: tuple[Any, ...], msg: str, kind: str = "value_error", value: Any = None
) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for checks that need settings or the loaded model."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


def json_safe(value: Any) -> Any:
    """`value` with every NaN/±Infinity float, at any depth, as the string "nan", "inf" or "-inf".

    Python's json accepts the bare tokens NaN and Infinity in a request, but a response may not carry
    them (Starlette's JSONResponse refuses them), so a 422 that echoes one back must spell it out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 (`detail: [{type, loc, msg, input}]`), made JSON-safe for every route.

    Regression: with FastAPI's default handler a NaN or Infinity anywhere in a body (e.g.
    `{"filters": {"min_price": NaN}}`) was echoed in the error's `input`, the response could not be
    encoded, and the client got a 500 with a traceback in the log instead of a 422 naming the field."""
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only
        raise exc
    return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})


def documented_methods(app: Any, path: str) -> set[str]:
    """The methods the OpenAPI document lists for `path` (templates like /admin/models/{v} match)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^}/]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {m.upper() for m in operations if m.lower() in _HTTP_METHODS}
    return methods


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own HTTPException answer, except that a 405's `Allow` lists every method the
    OpenAPI document gives the path: Starlette names only the first route that matched it (e.g.
    `POST` alone for `/admin/candidate`, which also takes `DELETE`)."""
    from fastapi.exception_handlers import http_exception_handler

    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and (methods := documented_methods(request.app, request.url.path)):
        exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(sorted(methods))})
    return await http_exception_handler(request, exc)


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    """503 with `Retry-After` for a storage failure anywhere (app.stores.outage.storage_errors): a
    write that could not be made durable, or a read with nothing else to answer from. Never a 500
    with a traceback, and the connection stays open. A raw client error (a route that reached the
    store without the guard) is recorded in the app's StoreHealth here: a GET as a read, else a write."""
    from app.stores.outage import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        unavailable = exc
    else:
        op = "read" if request.method in ("GET", "HEAD") else "write"
        unavailable = request.app.state.store_health.failed(op, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": str(unavailable)},
        headers={"Retry-After": str(unavailable.retry_after)},
    )
