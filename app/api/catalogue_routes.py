"""The live catalogue: what the service serves about each item now, and the admin API that changes it
(availability, price, category, extra fields; items no version knows yet).

A change is stored in the shared state (app/stores: the SQLite state db or Redis) as one atomic
update, applied on this replica at once and on every other within one catalogue poll
(app/engine/catalogue_live.py). Nothing is stored when any item of a change is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from starlette.concurrency import run_in_threadpool

from app.api.catalogue_schemas import (
    CatalogueBulkChange,
    CatalogueBulkResult,
    CatalogueChange,
    CatalogueItem,
    CatalogueOverview,
    CatalogueRegistration,
)
from app.api.deps import AdminDep, WritableDep
from app.api.openapi import errors
from app.engine.catalogue_edits import Action, CatalogueEditError, CataloguePatch
from app.engine.catalogue_live import LiveCatalogue, entry_counts
from app.engine.model import LoadedModel
from app.stores.records import CatalogueEntry, CatalogueSnapshot

router = APIRouter(tags=["catalogue"])
ADMIN_WRITE: dict[str, Any] = {
    "dependencies": [AdminDep, WritableDep]
}  # admin routes, tag "catalogue" only: a second tag draws each operation twice in /docs
ItemPath = Path(min_length=1, max_length=256, description="An item id (ids with a '/' : use the bulk route)")


def _catalogue(request: Request) -> LiveCatalogue:
    return request.app.state.catalogue


def _serving(request: Request) -> LoadedModel | None:
    return request.app.state.store.current


def _known(request: Request) -> Callable[[str], bool]:
    """Whether a loaded version (the served one or the candidate) knows an item id."""
    models = [m for m in (_serving(request), request.app.state.candidate.current) if m is not None]
    return lambda item: any(item in model.item_index for model in models)


def describe(catalogue: LiveCatalogue, model: LoadedModel | None, item_id: str) -> dict[str, Any] | None:
    """The item as served now (CatalogueItem); None when neither the version nor the overlay has it."""
    entry = catalogue.snapshot.entries.get(item_id)
    index = None if model is None else model.item_index.get(item_id)
    if index is None and entry is None:
        return None
    price: float | None = None
    category: str | None = None
    fields: dict[str, str | None] = {}
    if model is not None and index is not None:
        view = catalogue.view(model)
        price = float(view.price[index])
        code = int(view.category[index])
        category = view.categories[code] if code >= 0 else None
        fields = {name: str(column[index]) or None for name, column in view.item_extra.items()}
    elif entry is not None:
        price, category = entry.price, entry.category
    if entry is not None:
        fields.update(entry.fields)
    return {
        "item_id": item_id,
        "model_version": None if model is None else model.version,
        "known": index is not None,
        "registered": entry is not None and entry.registered,
        "available": entry is None or entry.available,
        "price": None if price is None or math.isnan(price) else price,
        "category": category,
        "fields": fields,
        "overrides": [] if entry is None else _overrides(entry),
        "updated_at": None if entry is None else entry.updated_at,
    }


def _overrides(entry: CatalogueEntry) -> list[str]:
    named = [("available", not entry.available), ("price", entry.price is not None)]
    named.append(("category", entry.category is not None))
    return [name for name, on in named if on] + [f"fields.{name}" for name in sorted(entry.fields)]


async def _change(
    request: Request, patches: list[CataloguePatch], where: Callable[[str], str]
) -> CatalogueSnapshot:
    """Apply the patches in one atomic update; a refused item is its rule's 404/409, naming it by
    `where(item_id)`. A store that fails answers 503 (app.api.errors.store_unavailable_handler)."""
    try:
        return await run_in_threadpool(_catalogue(request).change, patches, _known(request))
    except CatalogueEditError as exc:
        raise HTTPException(exc.status, f"{where(exc.item_id)}: {exc}") from exc


def _item(request: Request, item_id: str) -> dict[str, Any]:
    described = describe(_catalogue(request), _serving(request), item_id)
    if described is None:  # cleared and unknown to the served version (the candidate's item)
        described = {
            "item_id": item_id, "model_version": None, "known": False, "registered": False,
            "available": True, "price": None, "category": None, "fields": {}, "overrides": [],
            "updated_at": None,
        }  # fmt: skip
    return described


@router.get("/v1/catalogue", response_model=CatalogueOverview)
async def catalogue_overview(request: Request) -> dict[str, Any]:
    """Every item with an override or a registration as this replica serves it, and the generation."""
    catalogue, model = _catalogue(request), _serving(request)
    snapshot = catalogue.snapshot
    return {
        "generation": snapshot.generation,
        "loaded_at": catalogue.loaded_at,
        "poll_seconds": request.app.state.settings.catalogue_poll_seconds,
        "counts": entry_counts(snapshot),
        "items": [describe(catalogue, model, item) for item in sorted(snapshot.entries)],
    }


@router.get("/v1/catalogue/items/{item_id}", response_model=CatalogueItem, responses=errors(404))
async def catalogue_item(request: Request, item_id: str = ItemPath) -> dict[str, Any]:
    """One item as this replica serves it now: availability, price, category, fields."""
    described = describe(_catalogue(request), _serving(request), item_id)
    if described is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"unknown item {item_id!r}: the served version does not know it and it is not registered",
        )
    return described


def _one(action: Action, item_id: str, changes: dict[str, Any] | None = None) -> list[CataloguePatch]:
    return [CataloguePatch(item_id, changes or {}, action)]


@router.patch(
    "/admin/catalogue/items/{item_id}",
    response_model=CatalogueItem,
    **ADMIN_WRITE,
    responses=errors(400, 401, 403, 404, 413, 503),
)
async def change_item(request: Request, body: CatalogueChange, item_id: str = ItemPath) -> dict[str, Any]:
    """Mark an item unavailable (or back), or set its price, category or fields; 404 for an unknown item."""
    await _change(request, _one("update", item_id, body.changes()), lambda _: "item_id")
    return _item(request, item_id)


@router.patch(
    "/admin/catalogue/items",
    response_model=CatalogueBulkResult,
    **ADMIN_WRITE,
    responses=errors(400, 401, 403, 409, 413, 503),
)
async def change_items(request: Request, body: CatalogueBulkChange) -> dict[str, Any]:
    """Change many items in one atomic update; a 409 naming the first unknown item (nothing is stored).

    Unlike the one-item route, the resource addressed here (the catalogue) exists: a well-formed body
    naming an item the catalogue lacks conflicts with its state, a 409 at `body.items.<i>.item_id`."""
    positions: dict[str, int] = {}
    for i, item in enumerate(body.items):
        positions.setdefault(item.item_id, i)
    patches = [CataloguePatch(item.item_id, item.changes()) for item in body.items]
    try:
        snapshot = await run_in_threadpool(_catalogue(request).change, patches, _known(request))
    except CatalogueEditError as exc:
        where = f"body.items.{positions[exc.item_id]}.item_id"
        raise HTTPException(status.HTTP_409_CONFLICT, f"{where}: {exc}") from exc
    return {"generation": snapshot.generation, "items": [_item(request, item.item_id) for item in body.items]}


@router.post(
    "/admin/catalogue/items",
    response_model=CatalogueItem,
    status_code=201,
    **ADMIN_WRITE,
    responses=errors(400, 401, 403, 409, 413, 503),
)
async def register_item(request: Request, body: CatalogueRegistration) -> dict[str, Any]:
    """Register an item no version knows, with its metadata, for the next retrain; 409 if known."""
    await _change(request, _one("register", body.item_id, body.changes()), lambda _: "body.item_id")
    return _item(request, body.item_id)


@router.delete(
    "/admin/catalogue/items/{item_id}",
    response_model=CatalogueItem,
    **ADMIN_WRITE,
    responses=errors(401, 403, 404, 503),
)
async def clear_item(request: Request, item_id: str = ItemPath) -> dict[str, Any]:
    """Drop every override of an item (a registered item is unregistered); 404 when it has none."""
    await _change(request, _one("clear", item_id), lambda _: "item_id")
    return _item(request, item_id)
