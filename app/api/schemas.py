"""Request and response bodies. Static constraints live here as Field constraints, with the strict JSON
types of `app.api.types`; limits that come from Settings (max k, max history length, batch and event
counts) are checked in `app.api.request` (the same 422 shape FastAPI uses) and written into the
generated schema by `app.api.openapi`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.types import DateTime, EpochSeconds, JsonFloat, JsonInt

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Arm = Literal["student", "teacher", "serving", "candidate"]


class _Body(BaseModel):
    # allow_inf_nan=False: a NaN/Infinity (which Python's json accepts) is a 422 in any float field.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Filters(_Body):
    """Hard filters: no returned item breaks them. Unknown exclude_items are ignored (never served)."""

    categories: list[Id] | None = Field(
        None, description="Only items of these categories (names); [] = no filter"
    )
    exclude_items: list[Id] | None = Field(None, description="Never return these item ids")
    # A range with min_price above max_price matches no item (JSON Schema cannot relate two fields, so
    # the contract cannot refuse it): the answer is then empty, never an item outside the range.
    min_price: JsonFloat | None = Field(None, description="Inclusive; unknown prices are excluded")
    max_price: JsonFloat | None = Field(
        None, description="Inclusive; unknown prices are excluded; below min_price nothing matches"
    )


class RecommendRequest(_Body):
    user_id: Id | None = Field(None, description="Serves the teacher, the A/B assignment and the logs")
    history: list[Id] | None = Field(
        None,
        description="Raw item ids to condition on, most recent last; default: the stored history of user_id",
    )
    k: JsonInt = Field(10, ge=1, description="How many items (at most the max_k setting)")
    exclude_seen: bool = Field(True, strict=True, description="Never return an item of the history")
    filters: Filters | None = None
    fields: list[Id] | None = Field(
        None,
        description="Catalogue columns to add to each item: category, price and the extra item columns "
        "the served version was trained with (GET /v1/models lists them as item_fields); an unknown "
        "name is a 422 naming it. Default: ids and scores only (the lean answer)",
    )


class ScoredItem(BaseModel):
    """One recommended item. Catalogue columns appear only when the request asked for them (`fields`);
    extra columns (title, url, ...) are strings, null where the catalogue has no value."""

    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float = Field(
        description="The model's score (the user vector · the item vector, higher is better); in a "
        'popular fallback ("fallback": "popular") the item\'s share of the training interactions, in [0, 1]'
    )
    category: str | None = Field(None, description='With "category" in fields; null: no category')
    price: float | None = Field(None, description='With "price" in fields; null: unknown price')


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    arm: Arm
    items: list[ScoredItem]
    fallback: Literal["popular", "history_unavailable"] | None = Field(
        description='null: the model ranked the items. "popular": the history held no item the model '
        'knows, so the items are the most popular ones under the same filters. "history_unavailable": '
        "the user's stored history could not be read (the shared store is down), so the items are the "
        "most popular ones under the same filters and `exclude_seen` could not apply"
    )
    unknown_items: list[str]


class BatchRecommendRequest(_Body):
    requests: list[RecommendRequest] = Field(..., min_length=1)


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse]


class EventIn(_Body):
    user_id: Id
    item_id: Id
    timestamp: DateTime | EpochSeconds | None = Field(
        None, description="An RFC 3339 date-time or epoch seconds; default: now"
    )
    event: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="e.g. view, cart, purchase"
    )


class EventsAccepted(BaseModel):
    accepted: int
    unknown_items: list[str]  # not in the served model's catalogue: stored, learned at the next retrain


class HistoryItem(BaseModel):
    item_id: str
    timestamp: int
    event: str | None


class UserHistory(BaseModel):
    user_id: str
    items: list[HistoryItem]


VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"  # one folder name under models_dir


class ReloadRequest(_Body):
    version: str | None = Field(
        None,
        pattern=VERSION_PATTERN,
        description="A version folder under models_dir; default: what LATEST names",
    )


class ReloadResponse(BaseModel):
    changed: bool
    version: str
    previous: str | None


class ErrorDetail(BaseModel):
    """Every error but a 422: what was wrong, in words."""

    detail: str


class StoreOperation(BaseModel):
    ok: bool
    failing_since: str | None = Field(None, description="RFC 3339; when the current failure began")
    error: str | None = None
    failures: int = Field(0, description="Failed attempts since it began failing")


class StoreState(BaseModel):
    """The shared store (history, served answers, catalogue overlay) as this replica sees it."""

    backend: str
    reads: StoreOperation
    writes: StoreOperation


class Health(BaseModel):
    status: str = Field(
        description='"ready"; "degraded": ready, but the shared store is failing (reads degrade, '
        'writes answer 503); "not ready": no model loaded (503); "ok" for liveness'
    )
    model_version: str | None = None
    detail: str | None = None
    store: StoreState | None = None
