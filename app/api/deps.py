"""Typed dependencies: what routes get from `app.state`, readiness (503) and admin auth.

Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in its thread pool,
a thread hop per dependency per request (measured ~0.3 ms each under load on the hot path)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from app.config import Settings
from app.engine.model import LoadedModel
from app.engine.model_store import ModelStore
from app.stores.protocols import HistoryStore


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_model(request: Request) -> LoadedModel:
    """The current model, or 503 while none is loaded (start-up, or nothing published yet)."""
    return current_model(request)


def current_model(request: Request) -> LoadedModel:
    """`get_model` as a plain call, for the hot route that skips dependency resolution."""
    model = request.app.state.store.current
    if model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet", headers={"Retry-After": "5"}
        )
    return model


async def get_history(request: Request) -> HistoryStore:
    return request.app.state.history


async def require_admin(request: Request) -> None:
    """Bearer token from RECDISTILL_ADMIN_TOKEN; without that setting the admin API is off (403)."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "admin API disabled: RECDISTILL_ADMIN_TOKEN is not set"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid admin token")


async def require_writable(request: Request) -> AsyncIterator[None]:
    """A route that writes to the shared store: while its writes are failing, 503 at once (no wait on
    a store that just failed, see app.stores.outage); a route that completes counts as a success."""
    health = request.app.state.store_health
    if health.fail_fast("write"):
        raise health.unavailable("write")
    yield
    health.succeeded("write")


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
HistoryDep = Annotated[HistoryStore, Depends(get_history)]
AdminDep = Depends(require_admin)
WritableDep = Depends(require_writable)
