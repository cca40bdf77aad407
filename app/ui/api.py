"""The JSON the dashboard needs beyond the public API: every version with its report, a report's
plots, catalogue fields of items, and the traffic of the last hour.

Read-only and unauthenticated like `GET /v1/models` (which already shows the served version's
metrics); the admin actions stay on the admin API. Only files a manifest names are ever served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import ModelDep, SettingsDep, StoreDep
from app.api.errors import invalid
from app.api.openapi import errors
from app.api.schemas import VERSION_PATTERN, Id
from app.engine import versions
from app.engine.catalogue import CatalogueView
from app.engine.model import LoadedModel
from app.engine.recommender import catalogue_column
from app.ui.traffic import TrafficRing

router = APIRouter(prefix="/ui/api", tags=["dashboard"])
VersionPath = Annotated[str, PathParam(pattern=VERSION_PATTERN, max_length=128)]
_PLOT_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def version_detail(models_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    """A `list_versions` row plus its manifest summary, its report's training curves and plot names."""
    if row.get("error"):
        return row
    name = row["version"]
    manifest = versions.manifest_of(models_dir, name)
    report: dict[str, Any] = {}
    if "report.json" in manifest.report:
        try:
            report = json.loads((models_dir / name / "report.json").read_text())
        except (OSError, ValueError):
            report = {}
    return {
        **row,
        **versions.show(models_dir, name),
        "curves": report.get("curves", {}),
        "plots": [f for f in manifest.report if Path(f).suffix in _PLOT_TYPES],
    }


@router.get("/versions", responses=errors(409))
async def list_versions(request: Request, store: StoreDep) -> dict[str, Any]:
    """Every published version, oldest first: offline metrics, sizes, parity, gates, training curves."""
    state = await run_in_threadpool(store.status)
    pinned = state["pinned"]["version"] if state.get("pinned") else None

    def read() -> list[dict[str, Any]]:
        rows = versions.list_versions(store.models_dir, state.get("latest"), pinned)
        return [version_detail(store.models_dir, row) for row in rows]

    try:
        rows = await run_in_threadpool(read)
    except versions.VersionError as exc:  # a version changed between listing and reading it
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    slot = getattr(request.app.state, "candidate", None)  # the version beside the served one, if any
    current = None if slot is None else slot.current
    return {
        "versions": rows,
        **state,
        "candidate": None if current is None else current.version,
        "candidate_api": slot is not None,
    }


@router.get("/versions/{version}/files/{name}", include_in_schema=False)
async def version_file(version: VersionPath, name: str, store: StoreDep) -> FileResponse:
    """A plot of the version's report, only when its manifest names it."""
    try:
        manifest = await run_in_threadpool(versions.manifest_of, store.models_dir, version)
    except versions.VersionError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    suffix = Path(name).suffix
    if name not in manifest.report or suffix not in _PLOT_TYPES:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"{name!r} is not a plot of version {version}'s report"
        )
    return FileResponse(store.models_dir / version / name, media_type=_PLOT_TYPES[suffix])


def catalogue(model: LoadedModel, view: CatalogueView, item_ids: list[str]) -> list[dict[str, Any]]:
    """Each id with its catalogue fields as answers carry them now (the live view: the trained
    category, price and extra columns with the overlay applied), whether it is available, and its
    popularity rank (1: most popular); unknown ids say so."""
    rank = np.empty(model.n_items, np.int64)
    rank[model.popular_order] = np.arange(1, model.n_items + 1)
    known = [(item_id, model.item_index.get(item_id)) for item_id in item_ids]
    indices = np.array([i for _, i in known if i is not None], np.int64)
    columns = {name: iter(catalogue_column(view, name, indices)) for name in model.item_fields}
    unavailable = set(view.unavailable[np.isin(view.unavailable, indices)].tolist())
    out: list[dict[str, Any]] = []
    for item_id, index in known:
        if index is None:
            out.append({"item_id": item_id, "known": False})
            continue
        fields = {name: next(values) for name, values in columns.items()}
        out.append(
            {"item_id": item_id, "known": True, **fields, "available": index not in unavailable,
             "popularity_rank": int(rank[index])}
        )  # fmt: skip
    return out


@router.get("/items", responses=errors(503))
async def items(
    request: Request, model: ModelDep, settings: SettingsDep, ids: Annotated[list[Id], Query(min_length=1)]
) -> dict[str, Any]:
    """Catalogue fields of the given items (at most max_history ids), as the served version answers now."""
    if len(ids) > settings.max_history:
        raise invalid(("query", "ids"), f"at most {settings.max_history} ids", "too_long")
    view = request.app.state.catalogue.view(model)
    return {"model_version": model.version, "items": catalogue(model, view, ids)}


@router.get("/traffic")
async def traffic(
    request: Request,
    bucket_seconds: Annotated[int, Query(ge=10, le=3600, description="Bucket width in seconds")] = 60,
    endpoint: Annotated[
        str | None, Query(max_length=256, description="One route template; default: every route but /ui")
    ] = None,
) -> dict[str, Any]:
    """The last hour of request rate, 4xx/5xx and latency percentiles, per time bucket."""
    ring: TrafficRing = request.app.state.traffic

    def keep(e: str) -> bool:
        return e == endpoint if endpoint is not None else not e.startswith("/ui")

    return {
        "bucket_seconds": bucket_seconds,
        "endpoint": endpoint,
        "buckets": ring.series(bucket_seconds, keep),
    }
