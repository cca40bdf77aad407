"""A Redis-backed `HistoryStore`, so every replica behind a load balancer reads the same histories.

Selected by `RECDISTILL_HISTORY_BACKEND=redis` + `RECDISTILL_REDIS_URL`; the `redis` client is an
optional dependency (the `redis` extra), imported only when this store is built.

Layout (every key under `prefix`):
- `e:<user>` sorted set of logged events, `s:<user>` sorted set of the model version's seed rows;
  score = timestamp, member = 16 hex digits of a global sequence number + JSON [item, event]. The
  sequence comes from one `INCRBY seq`, so equal timestamps keep arrival order across replicas
  (the member's hex prefix sorts like the number), as SQLite's rowid does.
- `seeded:<version>` rows seeded for that version; `seeding:<version>` a lock (SET NX EX) so one
  replica seeds while the others serve.
`history` reads the newest `limit` of both sets in one round trip and merges them.

Durability: `append` returns once Redis has applied the MULTI/EXEC. That survives a replica crash
(the point of sharing); surviving a Redis crash needs Redis run with `appendonly yes` and
`appendfsync always` (the SQLite FULL equivalent) or `everysec` (≤ 1 s lost). The store logs a
warning at start when it can read a weaker setting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import numpy as np

from app.stores.records import Interaction
from app.stores.redis_client import import_redis, redact, sync_client

log = logging.getLogger(__name__)

SEED_LOCK_SECONDS = 600
_CHUNK = 1000  # users per pipeline while seeding


def _member(seq: int, item_id: str, event: str | None) -> str:
    return f"{seq:016x}" + json.dumps([item_id, event], separators=(",", ":"))


def _parse(user_id: str, member: str, score: float) -> Interaction:
    item, event = json.loads(member[16:])
    return Interaction(user_id, item, int(score), event)


class RedisHistoryStore:
    """Histories shared by every replica; see the module docstring for the key layout."""

    def __init__(self, url: str, prefix: str = "recdistill:", timeout: float = 5.0):
        redis = import_redis(url)
        self.url, self.prefix = url, prefix
        self._errors = redis.RedisError
        self._sync = sync_client(url, timeout)
        self._async = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._warn_if_not_durable()

    def _warn_if_not_durable(self) -> None:
        try:
            aof = self._sync.config_get("appendonly").get("appendonly")
            fsync = self._sync.config_get("appendfsync").get("appendfsync")
        except self._errors:  # CONFIG is often disabled on managed Redis: nothing to check
            return
        if aof != "yes" or fsync != "always":
            log.warning(
                "redis %s runs appendonly=%s appendfsync=%s: acknowledged events survive a replica crash "
                "but not a redis crash; use appendonly yes + appendfsync always for power-loss durability",
                redact(self.url),
                aof,
                fsync,
            )

    def _key(self, kind: str, user_id: str) -> str:
        return f"{self.prefix}{kind}:{user_id}"

    # -- the async interface (HistoryStore) ---------------------------------------------------------
    async def history(self, user_id: str, limit: int) -> list[Interaction]:
        pipe = self._async.pipeline(transaction=False)
        pipe.zrevrange(self._key("e", user_id), 0, limit - 1, withscores=True)
        pipe.zrevrange(self._key("s", user_id), 0, limit - 1, withscores=True)
        events, seeds = await pipe.execute()
        rows = sorted(events + seeds, key=lambda ms: (ms[1], ms[0][:16]))[-limit:]
        return [_parse(user_id, member, score) for member, score in rows]

    async def append(self, events: Sequence[Interaction]) -> None:
        if not events:
            return
        last = await self._async.incrby(self.prefix + "seq", len(events))
        pipe = self._async.pipeline(transaction=True)
        for offset, e in enumerate(events):
            seq = last - len(events) + 1 + offset
            pipe.zadd(self._key("e", e.user_id), {_member(seq, e.item_id, e.event): e.timestamp})
        await pipe.execute()

    async def seed(
        self, version: str, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[int]
    ) -> int:
        return await asyncio.to_thread(self.seed_sync, version, user_ids, item_ids, timestamps)

    async def close(self) -> None:
        await self._async.aclose()
        self._sync.close()

    # -- seeding (sync: it runs on the model loader's thread) ---------------------------------------
    def seed_sync(
        self,
        version: str,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray,
    ) -> int:
        """Replace the seed rows with this version's, once per version across all replicas.

        Rows equal to a logged event (same user, item, timestamp) are skipped, as in SQLite. A
        replica that finds another one seeding returns 0 and serves meanwhile.
        """
        r, p = self._sync, self.prefix
        if r.exists(f"{p}seeded:{version}"):
            return 0
        if not r.set(f"{p}seeding:{version}", "1", nx=True, ex=SEED_LOCK_SECONDS):
            log.info("another replica is seeding version %s; not seeding here", version)
            return 0
        try:
            old = list(r.scan_iter(match=f"{p}s:*", count=1000))
            for start in range(0, len(old), _CHUNK):
                r.unlink(*old[start : start + _CHUNK])
            users = np.asarray(user_ids).astype(str)
            order = np.argsort(users, kind="stable")
            users, items = users[order], np.asarray(item_ids).astype(str)[order]
            ts = np.asarray(timestamps, np.int64)[order]
            bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
            groups = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
            added = 0
            last = r.incrby(p + "seq", len(users)) if len(users) else 0
            seq = last - len(users) + 1
            for start in range(0, len(groups), _CHUNK):
                chunk = groups[start : start + _CHUNK]
                read = r.pipeline(transaction=False)
                for lo, _ in chunk:
                    read.zrange(self._key("e", users[lo]), 0, -1, withscores=True)
                logged = read.execute()
                write = r.pipeline(transaction=False)
                for (lo, hi), events in zip(chunk, logged, strict=True):
                    seen = {(json.loads(m[16:])[0], int(s)) for m, s in events}
                    mapping = {}
                    for row in range(lo, hi):
                        if (items[row], int(ts[row])) not in seen:
                            mapping[_member(seq + row, items[row], None)] = int(ts[row])
                    if mapping:
                        write.zadd(self._key("s", users[lo]), mapping)
                        added += len(mapping)
                write.execute()
            r.set(f"{p}seeded:{version}", added)
            return added
        finally:
            r.delete(f"{p}seeding:{version}")

    def seed_from_arrays(
        self, version: str, user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray
    ) -> int:
        """As SqliteHistoryStore's: seed from the model's arrays; a Redis error is logged, not raised
        (the version is served without the seed, as the SQLite path does on sqlite3.Error)."""
        try:
            return self.seed_sync(version, user_ids, item_ids, timestamps)
        except self._errors:
            log.exception("seeding redis history from %s failed; serving without the seed", version)
            return 0
