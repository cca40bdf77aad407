"""The live catalogue overlay in the Redis every replica shares: the hash `<prefix>catalogue:items`
(item id -> entry JSON) and the counter `<prefix>catalogue:generation`, which each replica polls.

An update is an optimistic transaction (WATCH both keys, read the entries, MULTI, write, INCR): a
concurrent update through another replica makes it retry with the new entries, so neither change is
lost."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.stores.records import CatalogueChange, CatalogueEntry, CatalogueSnapshot
from app.stores.redis_client import sync_client


class RedisCatalogueStore:
    def __init__(self, url: str, prefix: str = "recdistill:", timeout: float = 5.0):
        self._r = sync_client(url, timeout)
        self._items = f"{prefix}catalogue:items"
        self._generation = f"{prefix}catalogue:generation"

    def generation(self) -> int:
        return int(self._r.get(self._generation) or 0)

    def snapshot(self) -> CatalogueSnapshot:
        pipe = self._r.pipeline(transaction=True)  # MULTI/EXEC: the generation matches the entries
        pipe.get(self._generation)
        pipe.hgetall(self._items)
        generation, raw = pipe.execute()
        entries = {item: CatalogueEntry.from_json(json.loads(v)) for item, v in raw.items()}
        return CatalogueSnapshot(int(generation or 0), entries)

    def update(self, item_ids: Sequence[str], change: CatalogueChange) -> int:
        ids = list(dict.fromkeys(item_ids))

        def attempt(pipe: Any) -> None:
            stored = pipe.hmget(self._items, ids) if ids else []  # immediate: the pipe is watching
            entries = [
                change(item, None if raw is None else CatalogueEntry.from_json(json.loads(raw)))
                for item, raw in zip(ids, stored, strict=True)
            ]
            pipe.multi()
            for item, entry in zip(ids, entries, strict=True):
                if entry is None:
                    pipe.hdel(self._items, item)
                else:
                    pipe.hset(self._items, item, json.dumps(entry.to_json()))
            pipe.incr(self._generation)

        replies = self._r.transaction(attempt, self._items, self._generation)
        return int(replies[-1])

    def close(self) -> None:
        self._r.close()
