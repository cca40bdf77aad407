"""The one pure-ASGI middleware at the edge: request metrics, the body-size limit, and the hot route's
direct call past the router."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

Endpoint = Callable[[Request], Awaitable[Response]]


class EdgeMiddleware:
    """The one pure-ASGI middleware around the app: counts and times every HTTP request (per route
    template) and refuses bodies over `limit` bytes with 413 before they are parsed (declared or
    streamed). One layer instead of two: each layer costs a closure and an await per message on the
    event loop, which is the service's bottleneck under load (measured with bench/service.py).

    `fast_routes` maps (method, path) to an endpoint that is also registered as a normal route (so
    it is documented and behaves the same): here it is called directly, skipping the router, the
    exception middleware and FastAPI's request handling, about a third of the loop's CPU per
    /v1/recommend. Its HTTP and validation errors go through the app's own exception handlers.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limit: int,
        fast_routes: Mapping[tuple[str, str], Endpoint] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = limit
        self.fast_routes = dict(fast_routes or {})
        self.reason = f"request body exceeds the limit of {limit} bytes (RECDISTILL_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500
        limit = self.limit
        fast: Endpoint | None = None
        endpoint = "unmatched"

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self.reason)
            return message

        try:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > limit:
                        await JSONResponse({"detail": self.reason}, status_code=413)(
                            scope, receive, send_wrapper
                        )
                        return
                    break
            fast = self.fast_routes.get((scope["method"], scope["path"]))
            if fast is None:
                await self.app(scope, limited_receive, send_wrapper)
            else:
                endpoint = scope["path"]
                await _call_fast(fast, scope, limited_receive, send_wrapper)
        finally:
            if fast is None:
                route: Any = scope.get("route")
                endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(endpoint, scope["method"], status_code, time.perf_counter() - start)


async def _call_fast(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `endpoint` as the router would, with the app's exception handlers (HTTP and validation
    errors, storage failures); anything else propagates to Starlette's ServerErrorMiddleware (500),
    as on a normal route."""
    request = Request(scope, receive)
    try:
        response = await endpoint(request)
    except Exception as exc:
        handlers = scope["app"].exception_handlers
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None or handlers.get(Exception) is handler:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)
