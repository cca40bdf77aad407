"""The rules of an operator's change to the live catalogue: what a change may name, and the entry it
leaves behind. Pure functions over `CatalogueEntry`; the store runs them inside its transaction, so
they judge the entry as stored, not a replica's copy of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.stores.records import CatalogueEntry

Action = Literal["update", "register", "clear"]


class CatalogueEditError(ValueError):
    """A change that cannot apply to the item as stored; `status` is the HTTP answer (404, 409)."""

    status = 409

    def __init__(self, item_id: str, message: str):
        super().__init__(message)
        self.item_id = item_id


class UnknownItem(CatalogueEditError):
    status = 404


class NoEntry(CatalogueEditError):
    status = 404


class ItemKnown(CatalogueEditError):
    status = 409


@dataclass(frozen=True)
class CataloguePatch:
    """One item's change. `changes` holds only what the request named, among available, price,
    category and fields: a None price or category puts the trained value back, a None field
    removes it. "register" adds an item no version knows; "clear" drops every override."""

    item_id: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    action: Action = "update"

    def then(self, later: CataloguePatch) -> CataloguePatch:
        """This change followed by `later` (same item) as one: the later values win, fields merge."""
        if later.action != "update":
            return later
        changes = {**self.changes, **later.changes}
        if "fields" in self.changes and "fields" in later.changes:
            changes["fields"] = {**(self.changes["fields"] or {}), **(later.changes["fields"] or {})}
        return CataloguePatch(self.item_id, changes, self.action)


def apply_patch(
    patch: CataloguePatch, current: CatalogueEntry | None, known: bool, now: float
) -> CatalogueEntry | None:
    """The entry to store after `patch` (None: none left); `known`: a loaded version knows the item.

    Raises UnknownItem (neither known nor registered), ItemKnown (registering a known or registered
    item) or NoEntry (clearing an item without overrides)."""
    item = patch.item_id
    if patch.action == "clear":
        if current is None:
            raise NoEntry(item, f"item {item!r} has no catalogue overrides to clear")
        return None
    if patch.action == "register":
        if known:
            raise ItemKnown(
                item, f"item {item!r} is in the served version's catalogue: change it with PATCH instead"
            )
        if current is not None and current.registered:
            raise ItemKnown(item, f"item {item!r} is registered already: change it with PATCH instead")
        base = replace(current or CatalogueEntry(item), registered=True)
    else:
        if current is None and not known:
            raise UnknownItem(
                item,
                f"unknown item {item!r}: the served version does not know it and it is not registered "
                "(register it with POST /admin/catalogue/items)",
            )
        base = current or CatalogueEntry(item)
    values: dict[str, Any] = {}
    for name in ("available", "price", "category"):
        if name in patch.changes:
            values[name] = patch.changes[name]
    if values.get("available", True) is None:  # null: back to the default, available
        values["available"] = True
    if "fields" in patch.changes:
        fields = dict(base.fields)
        for name, value in (patch.changes["fields"] or {}).items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        values["fields"] = fields
    entry = replace(base, **values, updated_at=now)
    return None if entry.empty else entry
