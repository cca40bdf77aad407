"""The catalogue store's contract (app.stores.protocols.CatalogueStore), on SQLite and on a real
redis-server: what the live catalogue overlay relies on. Two stores opened on one backend stand for
two replicas sharing its state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from app.stores.protocols import CatalogueStore
from app.stores.records import CatalogueEntry


def open_catalogue(backend: tuple[str, Any]) -> CatalogueStore:
    kind, where = backend
    if kind == "sqlite":
        from app.stores.catalogue_sqlite import SqliteCatalogueStore

        return SqliteCatalogueStore(where / "state.sqlite3")
    from app.stores.catalogue_redis import RedisCatalogueStore

    return RedisCatalogueStore(where)


@pytest.fixture
def stores(backend: tuple[str, Any]) -> Iterator[tuple[CatalogueStore, CatalogueStore]]:
    """Two replicas' stores on one backend."""
    a, b = open_catalogue(backend), open_catalogue(backend)
    yield a, b
    a.close()
    b.close()


def put(entries: dict[str, CatalogueEntry | None]) -> Any:
    """A change that stores exactly `entries` (None: delete)."""
    return lambda item, current: entries[item]


class TestCatalogueStoreContract:
    def test_empty_store_is_generation_zero_with_no_entries(
        self, stores: tuple[CatalogueStore, CatalogueStore]
    ) -> None:
        a, _ = stores
        assert a.generation() == 0
        snapshot = a.snapshot()
        assert (snapshot.generation, snapshot.entries) == (0, {})

    def test_update_round_trips_every_field_through_the_other_replica(
        self, stores: tuple[CatalogueStore, CatalogueStore]
    ) -> None:
        a, b = stores
        gone = CatalogueEntry("i01", available=False, updated_at=10.5)
        new = CatalogueEntry(
            "nouveauté-7",
            price=12.5,
            category="garden",
            fields={"title": "Spade", "url": "https://shop/7"},
            registered=True,
            updated_at=11.0,
        )
        assert a.update(["i01", "nouveauté-7"], put({"i01": gone, "nouveauté-7": new})) == 1
        snapshot = b.snapshot()
        assert snapshot.generation == 1 == b.generation()
        assert snapshot.entries == {"i01": gone, "nouveauté-7": new}

    def test_change_sees_the_stored_entry_and_none_deletes_it(
        self, stores: tuple[CatalogueStore, CatalogueStore]
    ) -> None:
        a, b = stores
        a.update(["i01"], put({"i01": CatalogueEntry("i01", price=3.0)}))
        seen: list[CatalogueEntry | None] = []

        def reprice(item: str, current: CatalogueEntry | None) -> CatalogueEntry | None:
            seen.append(current)
            return None if current is None else replace(current, price=4.0)

        assert b.update(["i01", "i02"], reprice) == 2
        assert seen == [CatalogueEntry("i01", price=3.0), None]  # i02 had none: it stays absent
        assert a.snapshot().entries == {"i01": CatalogueEntry("i01", price=4.0)}
        assert a.update(["i01"], put({"i01": None})) == 3
        assert b.snapshot().entries == {}

    def test_an_exception_in_change_aborts_the_whole_update(
        self, stores: tuple[CatalogueStore, CatalogueStore]
    ) -> None:
        a, _ = stores
        a.update(["i01"], put({"i01": CatalogueEntry("i01", available=False)}))

        def half(item: str, current: CatalogueEntry | None) -> CatalogueEntry | None:
            if item == "bad":
                raise LookupError("unknown item")
            return CatalogueEntry(item, price=1.0)

        with pytest.raises(LookupError):
            a.update(["i02", "bad"], half)
        snapshot = a.snapshot()
        assert snapshot.generation == 1
        assert snapshot.entries == {"i01": CatalogueEntry("i01", available=False)}

    def test_concurrent_updates_of_one_item_through_two_replicas_lose_nothing(
        self, stores: tuple[CatalogueStore, CatalogueStore]
    ) -> None:
        a, b = stores
        a.update(["i01"], put({"i01": CatalogueEntry("i01", fields={})}))

        def add_field(name: str) -> Any:
            def change(item: str, current: CatalogueEntry | None) -> CatalogueEntry:
                base = current or CatalogueEntry(item)
                return replace(base, fields={**base.fields, name: "x"})

            return change

        def writer(store: CatalogueStore, tag: str) -> None:
            for n in range(25):
                store.update(["i01"], add_field(f"{tag}{n}"))

        threads = [threading.Thread(target=writer, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        snapshot = a.snapshot()
        assert snapshot.generation == 51
        assert sorted(snapshot.entries["i01"].fields) == sorted(
            [f"a{n}" for n in range(25)] + [f"b{n}" for n in range(25)]
        )

    def test_entries_survive_reopening(self, backend: tuple[str, Any]) -> None:
        store = open_catalogue(backend)
        store.update(["i03"], put({"i03": CatalogueEntry("i03", category="toys")}))
        store.close()
        again = open_catalogue(backend)
        try:
            assert again.snapshot().entries == {"i03": CatalogueEntry("i03", category="toys")}
            assert again.generation() == 1
        finally:
            again.close()
