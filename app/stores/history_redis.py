"""A Redis-backed `HistoryStore`, so every replica behind a load balancer reads the same histories.

Selected by `RECDISTILL_HISTORY_BACKEND=redis` + `RECDISTILL_REDIS_URL`; the `redis` client is an
optional dependency (the `redis` extra), imported only when this store is built.

Layout (every key under `prefix`):
- `e:<user>` sorted set of logged events, `s:<user>` sorted set of the model version's seed rows;
  score = timestamp, member = 16 hex digits of a global sequence number + JSON [item, event]. The
  sequence comes from one `INCRBY seq`, so equal timestamps keep arrival order across replicas
  (the member's hex prefix sorts like the number), as SQLite's rowid does.
- `seeded:<version>` rows seeded for that version; `seeding:<version>` a lock (SET NX EX) so one
  replica seeds while the others serve. A new version's seed replaces each user's `s:<user>` in one
  MULTI/EXEC, so a reader never finds a user's seed half gone.
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
from collections import Counter
from collections.abc import Sequence

import numpy as np

from app.stores.records import Interaction
from app.stores.redis_client import import_redis, redact, sync_client

log = logging.getLogger(__name__)

SEED_LOCK_SECONDS = 600
_CHUNK = 1000  # users per pipeline while seeding


def _member(seq: int, item_id: str, event: str | None) -> str:
    return f"{seq:016x}" + json.dumps([item_id, event], separators=(",", ":"))


class _SeedMembers:
    """`_member` for many rows, as the bytes redis sends: each distinct (item, event) is JSON-encoded
    once, and the arguments are bytes already, so the client does not encode them one by one (which
    took a third of a 1M-row seed)."""

    def __init__(self) -> None:
        self._tails: dict[tuple[str, str | None], bytes] = {}

    def tail(self, item_id: str, event: str | None) -> bytes:
        out = self._tails.get((item_id, event))
        if out is None:
            out = self._tails[(item_id, event)] = json.dumps([item_id, event], separators=(",", ":")).encode()
        return out

    @staticmethod
    def member(seq: int, tail: bytes) -> bytes:
        """Equal to `_member(seq, item_id, event).encode()` for the tail of (item_id, event)."""
        return b"%016x" % seq + tail


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
        self,
        version: str,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[int],
        events: Sequence[str | None] | None = None,
    ) -> int:
        return await asyncio.to_thread(self.seed_sync, version, user_ids, item_ids, timestamps, events)

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
        events: Sequence[str | None] | np.ndarray | None = None,
    ) -> int:
        """Replace the seed rows with this version's, once per version across all replicas.

        Each user's seed set is swapped in one MULTI/EXEC (a reader sees the old rows or the new ones,
        never none), then the sets of users the new seed lacks are removed. Logged events are never
        touched; a seed row equal to one (same user, item, timestamp) is skipped as often as it was
        logged, as in SQLite. A replica that finds another one seeding returns 0 and serves meanwhile.
        """
        r, p = self._sync, self.prefix
        if r.exists(f"{p}seeded:{version}"):
            return 0
        if not r.set(f"{p}seeding:{version}", "1", nx=True, ex=SEED_LOCK_SECONDS):
            log.info("another replica is seeding version %s; not seeding here", version)
            return 0
        try:
            added = self._swap_seed(user_ids, item_ids, timestamps, events)
            r.set(f"{p}seeded:{version}", added)
            return added
        finally:
            r.delete(f"{p}seeding:{version}")

    def _users_with(self, kind: str) -> set[str]:
        """The users that have a `kind` set (e: logged events, s: seed rows), by one SCAN."""
        head = f"{self.prefix}{kind}:"
        return {key[len(head) :] for key in self._sync.scan_iter(match=f"{head}*", count=_CHUNK)}

    def _swap_seed(
        self,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray,
        events: Sequence[str | None] | np.ndarray | None,
    ) -> int:
        r = self._sync
        users = np.asarray(user_ids).astype(str)
        order = np.argsort(users, kind="stable")  # by user; each user's rows keep the order given
        users = users[order]
        items = np.asarray(item_ids).astype(str)[order].tolist()
        ts = np.asarray(timestamps, np.int64)[order].tolist()
        kinds = (
            [None] * len(users) if events is None else [e or None for e in np.asarray(events, object)[order]]
        )
        if not len(items) == len(ts) == len(kinds) == len(users):
            raise ValueError("seed arrays differ in length")
        logged_users, stale = self._users_with("e"), self._users_with("s")
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True]).tolist() if len(users) else [0]
        groups = [(users[lo], lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        seq = (r.incrby(self.prefix + "seq", len(users)) - len(users) + 1) if len(users) else 0
        members = _SeedMembers()
        tails = [members.tail(item, kind) for item, kind in zip(items, kinds, strict=True)]
        scores = [b"%d" % t for t in ts]
        added = 0
        for start in range(0, len(groups), _CHUNK):
            chunk = groups[start : start + _CHUNK]
            logged = self._logged_keys([u for u, _, _ in chunk if u in logged_users])
            write = r.pipeline(transaction=True)  # each user's old seed set goes as the new one lands
            for user, lo, hi in chunk:
                skip = logged.get(user)
                args: list[bytes] = []
                for row in range(lo, hi):
                    if skip and skip[(items[row], ts[row])] > 0:  # equal to a logged event
                        skip[(items[row], ts[row])] -= 1
                        continue
                    args += (scores[row], members.member(seq + row, tails[row]))
                key = self._key("s", user)
                write.delete(key)
                if args:
                    write.execute_command("ZADD", key, *args)
                    added += len(args) // 2
                stale.discard(user)
            write.execute()
        stale_keys = [self._key("s", user) for user in stale]
        for start in range(0, len(stale_keys), _CHUNK):
            r.unlink(*stale_keys[start : start + _CHUNK])
        return added

    def _logged_keys(self, users: list[str]) -> dict[str, Counter[tuple[str, int]]]:
        """Per user, how often each (item, timestamp) was logged as an event."""
        read = self._sync.pipeline(transaction=False)
        for user in users:
            read.zrange(self._key("e", user), 0, -1, withscores=True)
        return {
            user: Counter((json.loads(m[16:])[0], int(s)) for m, s in rows)
            for user, rows in zip(users, read.execute(), strict=True)
        }

    def seed_from_arrays(
        self,
        version: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray,
        events: np.ndarray | None = None,
    ) -> int:
        """As SqliteHistoryStore's: seed from the model's arrays; a Redis error is logged, not raised
        (the version is served without the seed, as the SQLite path does on sqlite3.Error)."""
        try:
            return self.seed_sync(version, user_ids, item_ids, timestamps, events)
        except self._errors:
            log.exception("seeding redis history from %s failed; serving without the seed", version)
            return 0
