"""Bodies of the catalogue routes (app/api/catalogue_routes.py): an operator's change to an item,
a registration, and the item as the service now serves it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.api.schemas import Id
from app.api.types import JsonFloat

MAX_BULK_ITEMS = 10_000  # items per bulk change: one transaction in the shared store
MAX_FIELDS = 64

Price = Annotated[JsonFloat, Field(ge=0, description="The current price, a finite number >= 0")]
# An identifier other than the answer's and the catalogue's own keys. The lookahead keeps the contract
# exact: a name the schema accepts is a name the route accepts.
FieldName = Annotated[
    str,
    StringConstraints(pattern=r"^(?!(item_id|score|category|price|available)$)[A-Za-z_][A-Za-z0-9_]{0,63}$"),
]
FieldValue = Annotated[str, StringConstraints(max_length=4096)]
_ONLY_NAMED = {"additionalProperties": False}  # a key that misses the pattern is refused, as documented
FieldChanges = Annotated[
    dict[FieldName, FieldValue | None], Field(max_length=MAX_FIELDS, json_schema_extra=_ONLY_NAMED)
]
FieldValues = Annotated[
    dict[FieldName, FieldValue], Field(max_length=MAX_FIELDS, json_schema_extra=_ONLY_NAMED)
]
_AVAILABLE = (
    "false: never served (by either arm, the shadow or /v1/compare) until set back; true or null: served"
)
_PRICE = "The current price (>= 0), used by the price filters and in answers; null: back to the trained price"
_CATEGORY = (
    "The current category, used by the category filter and in answers; a name the version never saw is "
    "fine (filters can name it at once); null: back to the trained category"
)
_FIELDS = (
    "Extra catalogue columns (title, url, ...) by name (an identifier; not item_id, score, category, price "
    "or available): served in answers that ask for a column the served version has, and exported for the "
    "next retrain (`recdistill catalogue export`); a null value removes the field"
)


class _Body(BaseModel):
    # python-re: the field-name pattern's lookahead (pydantic's default Rust engine has none).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, regex_engine="python-re")


class CatalogueChange(_Body):
    """What to change about one item: only the fields given change."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    available: bool | None = Field(None, strict=True, description=_AVAILABLE)
    price: Price | None = Field(None, description=_PRICE)
    category: Id | None = Field(None, description=_CATEGORY)
    fields: FieldChanges | None = Field(None, description=_FIELDS)

    @model_validator(mode="after")
    def _names_something(self) -> CatalogueChange:
        if not self.model_fields_set - {"item_id"}:
            raise ValueError("nothing to change: give at least one of available, price, category, fields")
        return self

    def changes(self) -> dict[str, Any]:
        """Only what the request named (an omitted field stays as it is; null resets it)."""
        return {name: getattr(self, name) for name in self.model_fields_set - {"item_id"}}


class CatalogueItemChange(CatalogueChange):
    model_config = ConfigDict(json_schema_extra={"minProperties": 2})  # item_id and one change

    item_id: Id


class CatalogueBulkChange(_Body):
    items: list[CatalogueItemChange] = Field(
        ...,
        min_length=1,
        max_length=MAX_BULK_ITEMS,
        description="Applied in order, as one atomic change: an item named twice gets both, the later winning",
    )


class CatalogueRegistration(_Body):
    """An item no version knows yet: served by none until a retrained version learns it."""

    item_id: Id
    available: bool = Field(True, strict=True, description=_AVAILABLE)
    price: Price | None = Field(None, description="Its price (>= 0); null: unknown")
    category: Id | None = Field(None, description="Its category; null: none")
    fields: FieldValues = Field(default_factory=dict, description=_FIELDS)

    def changes(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "price": self.price,
            "category": self.category,
            "fields": self.fields,
        }


class CatalogueItem(BaseModel):
    """One item as this replica serves it now: the trained catalogue with the overlay applied."""

    item_id: str
    model_version: str | None = Field(description="The served version `known` refers to")
    known: bool = Field(description="The served version knows (and can recommend) the item")
    registered: bool = Field(description="Added by an operator before any version knew it")
    available: bool
    price: float | None = Field(description="null: unknown")
    category: str | None = Field(description="null: none")
    fields: dict[str, str | None] = Field(description="The version's extra columns and the item's own fields")
    overrides: list[str] = Field(
        description="What the overlay sets: available, price, category, fields.<name>"
    )
    updated_at: float | None = Field(description="Epoch seconds of the last change; null: never changed")


class CatalogueBulkResult(BaseModel):
    generation: int = Field(description="The overlay generation that holds the change")
    items: list[CatalogueItem]


class CatalogueOverview(BaseModel):
    generation: int = Field(description="The overlay generation this replica serves (0: no change yet)")
    loaded_at: float | None = Field(description="When this replica last read the overlay (epoch seconds)")
    poll_seconds: float = Field(
        description="RECDISTILL_CATALOGUE_POLL_SECONDS (0: this replica does not poll)"
    )
    counts: dict[str, int] = Field(
        description="Items per kind of override: unavailable, price, category, ..."
    )
    items: list[CatalogueItem] = Field(description="Every item with an override or a registration, by id")
