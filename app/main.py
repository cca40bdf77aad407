"""The FastAPI app: `create_app(settings)` wires settings, the model store, the history store, the
micro-batcher and metrics onto `app.state` inside the lifespan (nothing loads at import time).

Extension points for shadow / A-B (issue 4), all on `app.state`:
- `choose_arm(user_id, headers) -> "student" | "teacher"` (async): which side answers (default: "student");
- `after_recommend`: async hooks called with a `RecommendContext` after each answer is computed
  (e.g. schedule a shadow teacher run); they must not block;
- `batcher.submit(Query(...))` runs any side of the loaded model off the event loop.

`uvicorn app.main:app` works through a module `__getattr__` that builds the app from the
environment on first access; importing this module builds nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.batching import MicroBatcher
from app.config import Settings
from app.deps import (
    AdminDep,
    HistoryDep,
    ModelDep,
    SettingsDep,
    StoreDep,
    current_model,
    history_ids,
    invalid,
    json_body_doc,
    limit_errors,
    prepare_request,
    read_json_body,
    validation_error_handler,
)
from app.history import Interaction, SqliteHistoryStore
from app.history_redis import RedisHistoryStore, open_history
from app.metrics import Metrics
from app.model_store import LoadedModel, ModelStore, ReloadRefused, read_seed, watch_latest
from app.recommender import (
    Prepared,
    item_list,
    limit_blas_threads,
    recommend_batch,
)
from app.routes_experiment import install_experiment, open_experiment
from app.schemas import (
    Arm,
    BatchRecommendRequest,
    BatchRecommendResponse,
    EventIn,
    EventsAccepted,
    Health,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    UserHistory,
)
from core.manifest import ManifestError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RecommendContext:
    """Everything a post-answer hook (shadow, experiment logging) may need about one request."""

    request: RecommendRequest
    response: dict[str, Any]  # exactly what the client receives
    model: LoadedModel
    prepared: Prepared
    history_ids: list[str]  # the raw history that conditioned the answer, most recent last
    arm: Arm
    headers: Mapping[str, str] | None = None  # the request's headers (session id, forced arm)
    inference_ms: float = 0.0  # time from batcher submit to result (the shadow's student latency)


AfterRecommend = Callable[[RecommendContext], Awaitable[None]]


def _json(payload: Any, status_code: int = 200) -> Response:
    """orjson straight to bytes: the hot path skips response-model re-validation."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]


class EdgeMiddleware:
    """The one pure-ASGI middleware around the app: counts and times every HTTP request (per route
    template) and refuses bodies over `limit` bytes with 413 before they are parsed (declared or
    streamed). One layer instead of two: each layer costs a closure and an await per message on the
    event loop, which is the service's bottleneck under load (benchmark, issue 3).

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
    """Run `endpoint` as the router would, with the app's handlers for HTTP and validation errors;
    anything else propagates to Starlette's ServerErrorMiddleware (500), as on a normal route."""
    request = Request(scope, receive)
    try:
        response = await endpoint(request)
    except (HTTPException, RequestValidationError) as exc:
        handlers = scope["app"].exception_handlers
        handler = next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)
        response = await handler(request, exc)
    await response(scope, receive, send)


def _seed_history(history: SqliteHistoryStore | RedisHistoryStore) -> Callable[[LoadedModel], None]:
    def seed(model: LoadedModel) -> None:
        arrays = read_seed(model)  # ManifestError here refuses the version
        if arrays is None:
            return
        try:
            added = history.seed_from_arrays(model.version, *arrays)
        except sqlite3.Error:
            log.exception("seeding the history store from %s failed; serving without the seed", model.version)
            return
        if added:
            log.info("seeded %d interactions from version %s", added, model.version)

    return seed


def _freeze_heap(model: LoadedModel) -> None:
    """Move everything alive now (modules, the app, the model's id maps) out of the cyclic GC's view.

    A full (generation 2) collection walks every tracked object: measured 38 ms with a 100k-item
    model loaded, and it runs on the event loop whenever the allocation counters trigger it, which
    showed up in the p99 under load (benchmark, issue 3). Frozen objects are still freed by reference counting; only cycles among
    them would stay, and a loaded model has none. Called after start-up and after each model swap.
    """
    gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    loop = asyncio.get_running_loop()
    history = open_history(settings)  # SQLite, or Redis shared by replicas (RECDISTILL_HISTORY_BACKEND)
    store = ModelStore(
        settings.models_dir,
        settings.intra_op_threads,
        before_swap=_seed_history(history) if settings.seed_history else None,
        retrieval=settings.retrieval,
    )
    store.listeners.append(lambda m: metrics.set_model(m.version))
    store.listeners.append(lambda m: metrics.reloads.labels("loaded").inc())
    store.refusal_listeners.append(lambda v, r: metrics.reloads.labels("refused").inc())
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        recommend_batch, settings.batch_max_size, settings.batch_max_wait_ms / 1000
    )
    batcher.batch_sizes = metrics.batch_size.observe
    restore_blas = limit_blas_threads()
    batcher.start()
    experiment = open_experiment(app, store)  # state db, shadow worker (issue 4)
    app.state.history, app.state.store, app.state.batcher = history, store, batcher
    watcher = None
    try:
        await loop.run_in_executor(None, store.load_initial)
        gc.freeze()  # see _freeze_heap
        store.listeners.append(_freeze_heap)
        if settings.reload_poll_seconds > 0:
            watcher = loop.create_task(
                watch_latest(store, settings.reload_poll_seconds), name="recdistill-latest-watcher"
            )
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
        gc.unfreeze()  # what this app froze becomes collectable again (tests build many apps)
        await batcher.close()
        await history.close()
        restore_blas()
        await loop.run_in_executor(None, experiment.close)


async def _default_arm(user_id: str | None, headers: Mapping[str, str] | None = None) -> Arm:
    return "student"


async def _recommend(
    request: Request, req: RecommendRequest, model: LoadedModel, loc: tuple[Any, ...]
) -> dict[str, Any]:
    state = request.app.state
    settings: Settings = state.settings
    if errors := limit_errors(req, settings, loc):
        raise RequestValidationError(errors)
    history = await history_ids(request, req)
    arm: Arm = await state.choose_arm(req.user_id, request.headers)
    prepared = prepare_request(model, req, history, arm, loc)
    started = time.perf_counter()
    result = await state.batcher.submit(prepared.query)
    inference_ms = (time.perf_counter() - started) * 1000.0
    response = {
        "request_id": uuid.uuid4().hex,
        "model_version": model.version,
        "arm": arm,
        "items": item_list(model, result),
        "fallback": result.fallback,
        "unknown_items": prepared.unknown_items,
    }
    state.metrics.count_recommendation(arm, result.fallback)
    if state.after_recommend:
        ctx = RecommendContext(req, response, model, prepared, history, arm, request.headers, inference_ms)
        for hook in state.after_recommend:
            await hook(ctx)
    return response


async def recommend(request: Request) -> Response:
    """Top-k items for one user or history."""
    # The hot path (served through EdgeMiddleware.fast_routes): no dependencies to resolve, the body
    # validated in one pass (app/deps.py), the answer serialised by orjson.
    model = current_model(request)
    body = await read_json_body(request, RecommendRequest)
    return _json(await _recommend(request, body, model, ("body",)))


def _add_routes(app: FastAPI) -> None:
    app.post(
        "/v1/recommend",
        response_model=RecommendResponse,
        tags=["recommend"],
        openapi_extra=json_body_doc(RecommendRequest),
    )(recommend)

    @app.post("/v1/recommend/batch", response_model=BatchRecommendResponse, tags=["recommend"])
    async def recommend_batch_route(
        request: Request, body: BatchRecommendRequest, model: ModelDep, settings: SettingsDep
    ) -> Response:
        """Many recommendation requests in one call, answered in order."""
        if len(body.requests) > settings.max_batch_requests:
            raise invalid(
                ("body", "requests"), f"at most {settings.max_batch_requests} requests per batch", "too_long"
            )
        errors = [
            e for i, r in enumerate(body.requests) for e in limit_errors(r, settings, ("body", "requests", i))
        ]
        if errors:
            raise RequestValidationError(errors)
        results = await asyncio.gather(
            *(_recommend(request, r, model, ("body", "requests", i)) for i, r in enumerate(body.requests))
        )
        return _json({"results": results})

    @app.post("/v1/events", response_model=EventsAccepted, status_code=201, tags=["history"])
    async def post_events(
        request: Request,
        history: HistoryDep,
        settings: SettingsDep,
        body: Annotated[EventIn | list[EventIn], Body()],
    ) -> Response:
        """Append interactions to users' histories; 201 only once they are on disk."""
        events = body if isinstance(body, list) else [body]
        if not events:
            raise invalid(("body",), "no events given", "too_short")
        if len(events) > settings.max_events:
            raise invalid(("body",), f"at most {settings.max_events} events per call", "too_long")
        now = int(time.time())
        rows = [
            Interaction(
                e.user_id,
                e.item_id,
                now
                if e.timestamp is None
                else int(
                    (e.timestamp if e.timestamp.tzinfo else e.timestamp.replace(tzinfo=UTC)).timestamp()
                ),
                e.event,
            )
            for e in events
        ]
        await history.append(rows)
        request.app.state.metrics.events.inc(len(rows))
        model = request.app.state.store.current
        unknown = (
            []
            if model is None
            else list(dict.fromkeys(r.item_id for r in rows if r.item_id not in model.item_index))
        )
        return _json({"accepted": len(rows), "unknown_items": unknown}, status_code=201)

    @app.get("/v1/users/{user_id}/history", response_model=UserHistory, tags=["history"])
    async def user_history(
        user_id: str, history: HistoryDep, settings: SettingsDep, limit: int | None = Query(None, ge=1)
    ) -> Response:
        """The stored history of one user, most recent last."""
        rows = await history.history(user_id, min(limit or settings.max_history, settings.max_history))
        items = [{"item_id": r.item_id, "timestamp": r.timestamp, "event": r.event} for r in rows]
        return _json({"user_id": user_id, "items": items})

    @app.get("/v1/models", tags=["models"])
    async def models(model: ModelDep) -> dict[str, Any]:
        """The loaded version's manifest summary."""
        return model.summary()

    @app.post("/admin/reload", response_model=ReloadResponse, dependencies=[AdminDep], tags=["admin"])
    async def reload(store: StoreDep, body: ReloadRequest | None = None) -> ReloadResponse:
        """Verify and swap in a newer published version (LATEST, or the one named); 409 if refused."""
        previous = store.current.version if store.current else None
        loop = asyncio.get_running_loop()
        try:
            if body is not None and body.version:
                model, changed = await loop.run_in_executor(None, store.load, body.version), True
            else:
                model, changed = await loop.run_in_executor(None, store.reload_latest)
        except (ReloadRefused, ManifestError) as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"version refused, still serving {previous}: {exc}"
            ) from exc
        return ReloadResponse(changed=changed, version=model.version, previous=previous)

    @app.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> Health:
        """The process answers."""
        return Health(status="ok")

    @app.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def ready(store: StoreDep) -> Response:
        """Ready only with a model loaded."""
        model = store.current
        if model is None:
            return _json({"status": "not ready", "model_version": None, "detail": store.last_error}, 503)
        return _json({"status": "ready", "model_version": model.version, "detail": None})

    @app.get("/metrics", tags=["health"])
    async def metrics(request: Request) -> Response:
        """Prometheus exposition."""
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model is loaded by the lifespan, not here."""
    settings = settings or Settings()
    logging.getLogger("app").setLevel(settings.log_level.upper())
    # FastAPI's native OpenTelemetry probes the global providers (and the environment) on every
    # request; the service exports Prometheus metrics instead, so it is off (measured on the loop).
    app = FastAPI(
        title="recdistill",
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # NaN-safe 422s
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.choose_arm = _default_arm
    app.state.after_recommend = []
    app.state.store = ModelStore(settings.models_dir)  # replaced in the lifespan; empty until then
    _add_routes(app)
    install_experiment(app)
    app.add_middleware(
        EdgeMiddleware,
        metrics=app.state.metrics,
        limit=settings.max_body_bytes,
        fast_routes={("POST", "/v1/recommend"): recommend},
    )
    return app


def __getattr__(name: str) -> FastAPI:
    """`uvicorn app.main:app`: build the app from the environment on first access (lazily)."""
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
