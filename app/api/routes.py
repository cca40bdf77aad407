"""The service's own routes: recommend (one and batch), events and histories, models, reload, health,
metrics. The experiment's routes are in `app.api.experiment_routes`."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from app.api.body import json_body_doc, json_response, read_json_body
from app.api.deps import AdminDep, HistoryDep, ModelDep, SettingsDep, StoreDep, current_model
from app.api.errors import invalid
from app.api.openapi import errors
from app.api.request import answer, limit_errors, resolve
from app.api.rollout_schemas import ModelsResponse
from app.api.schemas import (
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
from app.api.types import epoch_seconds
from app.engine.model import LoadedModel
from app.engine.model_store import ReloadRefused
from app.stores.records import Interaction
from core.manifest import ManifestError

router = APIRouter()


async def _answer(
    request: Request, body: RecommendRequest, model: LoadedModel, loc: tuple[Any, ...]
) -> dict[str, Any]:
    return await answer(request, await resolve(request, body, model, loc))


async def recommend(request: Request) -> Response:
    """Top-k items for one user or history."""
    # The hot path (served through EdgeMiddleware.fast_routes): no dependencies to resolve, the body
    # validated in one pass (app/api/body.py), the answer serialised by orjson.
    model = current_model(request)
    body = await read_json_body(request, RecommendRequest)
    return json_response(await _answer(request, body, model, ("body",)))


router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    tags=["recommend"],
    responses=errors(400, 404, 413, 503),
    openapi_extra=json_body_doc(RecommendRequest),
)(recommend)


@router.post(
    "/v1/recommend/batch",
    response_model=BatchRecommendResponse,
    tags=["recommend"],
    responses=errors(400, 404, 413, 503),
)
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
        *(_answer(request, r, model, ("body", "requests", i)) for i, r in enumerate(body.requests))
    )
    return json_response({"results": results})


@router.post(
    "/v1/events",
    response_model=EventsAccepted,
    status_code=201,
    tags=["history"],
    responses=errors(400, 413, 503),
)
async def post_events(
    request: Request,
    history: HistoryDep,
    settings: SettingsDep,
    body: Annotated[EventIn | Annotated[list[EventIn], Field(min_length=1)], Body()],
) -> Response:
    """Append interactions to users' histories; 201 only once they are durable, else 503."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise invalid(("body",), "no events given", "too_short")
    if len(events) > settings.max_events:
        raise invalid(("body",), f"at most {settings.max_events} events per call", "too_long")
    now = int(time.time())
    rows = [
        Interaction(
            e.user_id, e.item_id, now if e.timestamp is None else int(epoch_seconds(e.timestamp)), e.event
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
    return json_response({"accepted": len(rows), "unknown_items": unknown}, status_code=201)


@router.get(
    "/v1/users/{user_id}/history", response_model=UserHistory, tags=["history"], responses=errors(503)
)
async def user_history(
    user_id: str, history: HistoryDep, settings: SettingsDep, limit: int | None = Query(None, ge=1)
) -> Response:
    """The stored history of one user, most recent last."""
    rows = await history.history(user_id, min(limit or settings.max_history, settings.max_history))
    items = [{"item_id": r.item_id, "timestamp": r.timestamp, "event": r.event} for r in rows]
    return json_response({"user_id": user_id, "items": items})


@router.get("/v1/models", tags=["models"], response_model=ModelsResponse, responses=errors(503))
async def models(request: Request, model: ModelDep, store: StoreDep) -> dict[str, Any]:
    """The loaded version's manifest summary, what is served and why (pinned or latest), the candidate."""
    state = await run_in_threadpool(store.status)  # the pin may live in Redis
    candidate = request.app.state.candidate
    return {
        **model.summary(),
        **state,
        "candidate": candidate.summary(),
        "candidate_error": candidate.last_error,
        "candidate_source": candidate.source if candidate.current is not None else None,
    }


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(400, 401, 403, 409, 413),
)
async def reload(store: StoreDep, body: ReloadRequest | None = None) -> ReloadResponse:
    """Verify and swap in a version (the pin, else LATEST; or the one named); 409 if refused."""
    previous = store.current.version if store.current else None
    loop = asyncio.get_running_loop()
    try:
        if body is not None and body.version:
            model, changed = await loop.run_in_executor(None, store.load, body.version), True
        else:
            model, changed = await loop.run_in_executor(None, store.reload_target)
    except (ReloadRefused, ManifestError) as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"version refused, still serving {previous}: {exc}"
        ) from exc
    return ReloadResponse(changed=changed, version=model.version, previous=previous)


@router.get("/health/live", response_model=Health, tags=["health"])
async def live() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": Health}})
async def ready(request: Request, store: StoreDep) -> Response:
    """Ready with a model loaded; "degraded" (still 200) while the shared store fails."""
    # A store outage is not a reason to leave the balancer: every replica shares the store, so they
    # would all leave at once, while each still answers reads (degraded) and refuses writes with 503.
    health = request.app.state.store_health
    state = health.summary()
    model = store.current
    if model is None:
        body = {"status": "not ready", "model_version": None, "detail": store.last_error, "store": state}
        return json_response(body, 503)
    detail = health.describe()
    status_ = "ready" if detail is None else "degraded"
    return json_response(
        {"status": status_, "model_version": model.version, "detail": detail, "store": state}
    )


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
