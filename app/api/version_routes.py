"""The admin API for versions (bearer token): list, show, diff, promote, pin, unpin, rollback.

The same operations as `recdistill models ...`, through `app.engine.versions` and the model store.
Blocking work (loading a version, the pin in Redis, writing LATEST) runs in a worker thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminDep, StoreDep
from app.api.openapi import errors
from app.api.schemas import VERSION_PATTERN
from app.engine import versions
from app.engine.model_store import ModelStore, ReloadRefused
from app.stores.pins import PinError

router = APIRouter(prefix="/admin", dependencies=[AdminDep], tags=["admin"])
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=128)]


class ServedState(BaseModel):
    """What the replica that answered serves now, and why (as in GET /v1/models)."""

    served_version: str | None
    served_because: str
    pinned: dict[str, str] | None
    latest: str | None
    pin_error: str | None


def _http(exc: Exception, store: ModelStore) -> HTTPException:
    """404 for an unknown version; 409 for a refused or unreadable one (the old one keeps serving)."""
    if isinstance(exc, versions.UnknownVersion):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    served = store.current.version if store.current else None
    return HTTPException(status.HTTP_409_CONFLICT, f"{exc} (still serving {served})")


_REFUSED = (versions.VersionError, ReloadRefused, PinError, OSError)  # OSError: LATEST not writable


async def _state(store: ModelStore) -> ServedState:
    return ServedState(**await run_in_threadpool(store.status))


@router.get("/models", responses=errors(401, 403))
async def list_models(store: StoreDep) -> dict[str, Any]:
    """Every published version with its metrics and sizes, and which is LATEST and pinned."""
    state = await _state(store)
    pinned = state.pinned["version"] if state.pinned else None
    rows = await run_in_threadpool(versions.list_versions, store.models_dir, state.latest, pinned)
    return {"versions": rows, **state.model_dump()}


@router.get("/models/{version}", responses=errors(401, 403, 404, 409))
async def show_model(version: VersionPath, store: StoreDep) -> dict[str, Any]:
    """One version's manifest summary."""
    try:
        return await run_in_threadpool(versions.show, store.models_dir, version)
    except versions.VersionError as exc:
        raise _http(exc, store) from exc


@router.get("/models/{a}/diff/{b}", responses=errors(401, 403, 404, 409))
async def diff_models(a: VersionPath, b: VersionPath, store: StoreDep) -> dict[str, Any]:
    """Two versions' offline metrics, agreement, parameters and sizes side by side (b - a)."""
    try:
        return await run_in_threadpool(versions.diff, store.models_dir, a, b)
    except versions.VersionError as exc:
        raise _http(exc, store) from exc


@router.post("/models/{version}/promote", response_model=ServedState, responses=errors(401, 403, 404, 409))
async def promote(version: VersionPath, store: StoreDep) -> ServedState:
    """Verify a version and switch LATEST to it; served at once unless a pin holds another."""
    try:
        await run_in_threadpool(versions.promote, store.models_dir, version)
        await run_in_threadpool(store.reload_target)
    except _REFUSED as exc:
        raise _http(exc, store) from exc
    return await _state(store)


@router.post("/models/{version}/pin", response_model=ServedState, responses=errors(401, 403, 404, 409))
async def pin(version: VersionPath, store: StoreDep) -> ServedState:
    """Verify and serve a version, and pin it: no LATEST poll moves any replica away from it."""
    try:
        versions.version_dir(store.models_dir, version)
        await run_in_threadpool(store.pin, version, "admin")
    except _REFUSED as exc:
        raise _http(exc, store) from exc
    return await _state(store)


@router.post("/unpin", response_model=ServedState, responses=errors(401, 403, 409))
async def unpin(store: StoreDep) -> ServedState:
    """Clear the pin; the replicas follow LATEST again."""
    try:
        await run_in_threadpool(store.unpin)
    except _REFUSED as exc:
        raise _http(exc, store) from exc
    return await _state(store)


@router.post("/rollback", response_model=ServedState, responses=errors(401, 403, 404, 409))
async def rollback(store: StoreDep) -> ServedState:
    """Pin the version published just before the served one (409 when there is none)."""
    current = store.current
    if current is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no version is served: nothing to roll back from")
    try:
        previous = await run_in_threadpool(versions.previous_version, store.models_dir, current.version)
        await run_in_threadpool(store.pin, previous, "rollback")
    except _REFUSED as exc:
        raise _http(exc, store) from exc
    return await _state(store)
