"""Request and response bodies. Static constraints live here as Field constraints; limits that come
from Settings (max k, max history length) are checked in `app.api.deps` and reported in the same 422
shape FastAPI uses (`detail: [{loc, msg, type}]`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Arm = Literal["student", "teacher"]


class _Body(BaseModel):
    # allow_inf_nan=False: a NaN/Infinity (which Python's json accepts) is a 422 in any float field.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Filters(_Body):
    """Hard filters: no returned item breaks them. Unknown exclude_items are ignored (never served)."""

    categories: list[Id] | None = Field(
        None, description="Only items of these categories (names); [] = no filter"
    )
    exclude_items: list[Id] | None = Field(None, description="Never return these item ids")
    min_price: float | None = Field(
        None, allow_inf_nan=False, description="Inclusive; unknown prices are excluded"
    )
    max_price: float | None = Field(
        None, allow_inf_nan=False, description="Inclusive; unknown prices are excluded"
    )

    @model_validator(mode="after")
    def _price_range(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) must not exceed max_price ({self.max_price})")
        return self


class RecommendRequest(_Body):
    user_id: Id | None = Field(None, description="Serves the teacher, the A/B assignment and the logs")
    history: list[Id] | None = Field(
        None,
        description="Raw item ids to condition on, most recent last; default: the stored history of user_id",
    )
    k: int = Field(10, ge=1, strict=True, description="How many items (at most the max_k setting)")
    exclude_seen: bool = Field(True, strict=True, description="Never return an item of the history")
    filters: Filters | None = None


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    arm: Arm
    items: list[ScoredItem]
    fallback: Literal["popular"] | None
    unknown_items: list[str]


class BatchRecommendRequest(_Body):
    requests: list[RecommendRequest] = Field(..., min_length=1)


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse]


class EventIn(_Body):
    user_id: Id
    item_id: Id
    timestamp: datetime | None = Field(None, description="ISO 8601 or epoch seconds; default: now")
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


class ReloadRequest(_Body):
    version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
        description="A version folder under models_dir; default: what LATEST names",
    )


class ReloadResponse(BaseModel):
    changed: bool
    version: str
    previous: str | None


class Health(BaseModel):
    status: str
    model_version: str | None = None
    detail: str | None = None
