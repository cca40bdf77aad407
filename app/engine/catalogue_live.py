"""The live catalogue overlay of one app run: the entries every replica shares, and a view of them
over each loaded version, kept ready for the request path.

Reads are lock-free: a request takes `view(model)`, one dict lookup in the current state. The state
(the entries and their views) is immutable and replaced whole, under a lock, when the overlay
changes: through this replica (`change`, applied here as soon as the store has it) or through
another one (`refresh`, run by the poller every RECDISTILL_CATALOGUE_POLL_SECONDS: it reads the
store's generation, one GET or SELECT, and reloads the entries only when it moved). So a change is
in every replica's answers within one poll. Views are built off the request path (by `refresh`, and
by `prepare`, a model store listener, when a version is loaded); a version seen before its listener
ran gets its view built on first use. Views are held through weak references: an unloaded version
is freed as before.

A poll that fails keeps the current overlay (serving slightly stale prices beats serving nothing)
and is recorded in the app's `StoreHealth`, which readiness shows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.engine.catalogue import CatalogueView, build_view, trained_view
from app.engine.catalogue_edits import CataloguePatch, apply_patch
from app.engine.model import LoadedModel
from app.stores.outage import StoreHealth, storage_errors
from app.stores.protocols import CatalogueStore
from app.stores.records import CatalogueEntry, CatalogueSnapshot

log = logging.getLogger(__name__)
_Held = tuple["weakref.ref[LoadedModel]", CatalogueView]


@dataclass(frozen=True)
class _State:
    snapshot: CatalogueSnapshot
    views: dict[int, _Held] = field(default_factory=dict)  # id(model) -> (its weak reference, view)
    loaded_at: float | None = None  # when the snapshot was read (None: never)


class LiveCatalogue:
    """The overlay's entries and their views (module docstring). `store` None: the trained catalogue
    only (an app whose lifespan has not run)."""

    def __init__(self, store: CatalogueStore | None = None, health: StoreHealth | None = None):
        self.store = store
        self.health = health
        self._state = _State(CatalogueSnapshot(0, {}))
        self._lock = threading.Lock()
        self._errors = storage_errors()
        self.listeners: list[Callable[[CatalogueSnapshot], None]] = []  # after each new snapshot

    @property
    def snapshot(self) -> CatalogueSnapshot:
        return self._state.snapshot

    @property
    def loaded_at(self) -> float | None:
        return self._state.loaded_at

    def view(self, model: LoadedModel) -> CatalogueView:
        """The model's catalogue as it is now (the request path: lock-free while the view exists)."""
        held = self._state.views.get(id(model))
        if held is not None and held[0]() is model:
            return held[1]
        return self._add_view(model)

    def prepare(self, model: LoadedModel | None) -> None:
        """Build a newly loaded version's view now (a ModelStore / CandidateSlot listener)."""
        if model is not None:
            self.view(model)

    def _add_view(self, model: LoadedModel) -> CatalogueView:
        with self._lock:
            state = self._state
            held = state.views.get(id(model))
            if held is not None and held[0]() is model:
                return held[1]
            view = _build(model, state.snapshot)
            views = {key: h for key, h in state.views.items() if h[0]() is not None}
            views[id(model)] = (weakref.ref(model), view)
            self._state = _State(state.snapshot, views, state.loaded_at)
            return view

    def _install(self, snapshot: CatalogueSnapshot) -> None:
        """Make `snapshot` current, with every held version's view rebuilt over it. An older read
        installed after a newer one is corrected by the next poll (the generations then differ)."""
        with self._lock:
            views: dict[int, _Held] = {}
            for key, (ref, _) in self._state.views.items():
                model = ref()
                if model is not None:
                    views[key] = (ref, _build(model, snapshot))
            self._state = _State(snapshot, views, time.time())
        for listener in self.listeners:
            listener(snapshot)

    def refresh(self) -> bool:
        """One poll: reload the entries when the store's generation moved; True when it did. Blocking
        (run it off the loop); never raises: a failed read keeps the current overlay."""
        if self.store is None:
            return False
        try:
            moved = self.store.generation() != self._state.snapshot.generation
            snapshot = self.store.snapshot() if moved or self._state.loaded_at is None else None
        except self._errors as exc:
            if self.health is not None:
                self.health.failed("read", exc)
            return False
        if self.health is not None:
            self.health.succeeded("read")
        if snapshot is None:
            return False
        self._install(snapshot)
        if moved:
            log.info(
                "catalogue overlay: generation %d, %d entries", snapshot.generation, len(snapshot.entries)
            )
        return moved

    def change(self, patches: Sequence[CataloguePatch], known: Callable[[str], bool]) -> CatalogueSnapshot:
        """Apply `patches` in the shared store as one atomic update, then here. Raises the patch
        rules' CatalogueEditError (nothing stored) or StoreUnavailable (nothing stored, as far as the
        store said). `known(item_id)`: whether a loaded version knows the item."""
        if self.store is None:
            raise RuntimeError("the catalogue store is not open")
        by_item: dict[str, CataloguePatch] = {}
        for patch in patches:  # an item named twice: both changes, in order
            held = by_item.get(patch.item_id)
            by_item[patch.item_id] = patch if held is None else held.then(patch)
        now = time.time()

        def change(item: str, current: CatalogueEntry | None) -> CatalogueEntry | None:
            return apply_patch(by_item[item], current, known(item), now)

        try:
            self.store.update(list(by_item), change)
            snapshot = self.store.snapshot()
        except self._errors as exc:
            if self.health is None:
                raise
            raise self.health.failed("write", exc) from exc
        if self.health is not None:
            self.health.succeeded("write")
        self._install(snapshot)
        return snapshot

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def entry_counts(snapshot: CatalogueSnapshot) -> dict[str, int]:
    """How many items each kind of override touches (an item may count in several)."""
    entries = snapshot.entries.values()
    return {
        "unavailable": sum(not e.available for e in entries),
        "price": sum(e.price is not None for e in entries),
        "category": sum(e.category is not None for e in entries),
        "fields": sum(bool(e.fields) for e in entries),
        "registered": sum(e.registered for e in entries),
    }


def _build(model: LoadedModel, snapshot: CatalogueSnapshot) -> CatalogueView:
    if not snapshot.entries:
        return trained_view(model)
    return build_view(model, snapshot.entries.values(), snapshot.generation)


async def follow_catalogue(catalogue: LiveCatalogue, interval_s: float) -> None:
    """Poll the overlay every `interval_s` (off the loop), so a change through any replica reaches
    this one within a poll; a failed poll is recorded (StoreHealth) and the overlay kept."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, catalogue.refresh)
        except asyncio.CancelledError:
            raise
        except Exception:  # refresh never raises by design; a surprise is logged, the poller lives on
            log.exception("catalogue poller: refresh failed; keeping the current overlay")
