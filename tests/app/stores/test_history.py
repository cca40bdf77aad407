"""The SQLite history store on its own: ordering, group commit, errors, seeding once per version."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.stores.history_sqlite import SqliteHistoryStore
from app.stores.records import Interaction


def test_history_is_ordered_by_time_then_arrival(tmp_path: Path) -> None:
    async def main() -> list[Interaction]:
        store = SqliteHistoryStore(tmp_path / "h.sqlite3")
        try:
            await store.append(
                [Interaction("u", "b", 20), Interaction("u", "a", 10), Interaction("v", "x", 5)]
            )
            await store.append([Interaction("u", "c", 20, "cart")])
            return await store.history("u", 10)
        finally:
            await store.close()

    assert asyncio.run(main()) == [
        Interaction("u", "a", 10),
        Interaction("u", "b", 20),
        Interaction("u", "c", 20, "cart"),
    ]


def test_concurrent_appends_share_one_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commits: list[int] = []

    async def main() -> list[Interaction]:
        store = SqliteHistoryStore(tmp_path / "h.sqlite3")
        real = store.append_sync
        monkeypatch.setattr(store, "append_sync", lambda events: (commits.append(len(events)), real(events)))
        gate = threading.Event()
        store._executor.submit(gate.wait)  # hold the writer thread so all 50 appends queue up
        try:
            tasks = [asyncio.ensure_future(store.append([Interaction("u", f"i{n}", n)])) for n in range(50)]
            await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks)
            return await store.history("u", 100)
        finally:
            await store.close()

    rows = asyncio.run(main())
    assert [r.item_id for r in rows] == [f"i{n}" for n in range(50)]
    assert commits == [50]


def test_a_failed_commit_fails_every_caller_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        store = SqliteHistoryStore(tmp_path / "h.sqlite3")

        def broken(events: list[Interaction]) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(store, "append_sync", broken)
        try:
            results = await asyncio.gather(
                store.append([Interaction("u", "a", 1)]),
                store.append([Interaction("u", "b", 2)]),
                return_exceptions=True,
            )
            assert [str(r) for r in results] == ["disk full", "disk full"]
        finally:
            await store.close()

    asyncio.run(main())


def test_seed_once_per_version_replacing_the_previous_seed(tmp_path: Path) -> None:
    async def main() -> list[str]:
        store = SqliteHistoryStore(tmp_path / "h.sqlite3")
        try:
            assert await store.seed("v1", ["u", "u"], ["a", "b"], [1, 2]) == 2
            assert await store.seed("v1", ["u"], ["zzz"], [3]) == 0  # already seeded: ignored
            await store.append([Interaction("u", "e", 5)])
            # v2's training data holds the logged event (exported, retrained): it is not doubled
            assert await store.seed("v2", ["u", "u"], ["b", "e"], [2, 5]) == 1
            return [r.item_id for r in await store.history("u", 10)]
        finally:
            await store.close()

    assert asyncio.run(main()) == ["b", "e"]
