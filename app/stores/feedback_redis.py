"""Redis-backed served-answer log and feedback, so `/v1/ab/report` counts every replica's answers.

Layout (under `prefix`):
- `served:<request_id>` hash (experiment, arm, forced, unit, model_version, items JSON, ts, and
  latency_ms, fallback, error when known) and `served_ts:<experiment>` sorted set request_id -> ts,
  for `since` windows;
- `served_by_version:<model_version>` sorted set request_id -> ts: the answers each version served
  (failed ones left out), for the shadow report's coverage;
- `fb:<request_id>` set of "event\\x1fitem" (SADD gives the duplicate flag atomically).
Served answers are buffered and written by a thread every `flush_interval` (no I/O on the request
path), by the same `ServedLog` code as the SQLite store. Feedback that reaches another replica before
the answer was flushed is retried once after two flush intervals before it is refused.
The report reads the window's rows and aggregates in Python: O(requests in the window), fine for the
report's on-demand use; per-minute counters would be the next step for very long windows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from app.stores.records import ARM_COUNT_KEYS, AnswerRows, Event, Served
from app.stores.redis_client import import_redis, redact, sync_client
from app.stores.served_log import ServedLog

_SEP = "\x1f"
_PAGE = 2000


class RedisFeedbackStore(ServedLog):
    """Served-answer log + feedback shared by all replicas (see the module docstring); the buffer,
    the writer thread, `flush` and the feedback checks are `ServedLog`'s, as for SQLite."""

    def __init__(
        self,
        url: str,
        prefix: str = "recdistill:",
        *,
        flush_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
    ):
        self._flush_errors = (import_redis(url).RedisError,)
        self._r = sync_client(url, timeout)
        self.url, self.prefix = url, prefix
        super().__init__(flush_interval, clock, "feedback-writer-redis")

    def _describe(self) -> str:
        return f"redis {redact(self.url)}"

    def _stored(self, request_id: str) -> Served | None:
        row = self._r.hgetall(f"{self.prefix}served:{request_id}")
        if not row:
            return None
        return Served(
            request_id,
            row["experiment"],
            row["arm"],
            row["unit"],
            row["model_version"],
            tuple(json.loads(row["items"])),
            row["forced"] == "1",
            float(row["ts"]),
        )

    def _write(self, batch: list[Served]) -> None:
        pipe = self._r.pipeline(transaction=True)
        for s in batch:
            pipe.hset(
                f"{self.prefix}served:{s.request_id}",
                mapping={
                    "experiment": s.experiment,
                    "arm": s.arm,
                    "unit": s.unit,
                    "model_version": s.model_version,
                    "items": json.dumps(s.items),
                    "forced": "1" if s.forced else "0",
                    "ts": repr(s.ts),
                    "error": "1" if s.error else "0",
                    **({} if s.latency_ms is None else {"latency_ms": repr(s.latency_ms)}),
                    **({} if s.fallback is None else {"fallback": s.fallback}),
                },
            )
            pipe.zadd(f"{self.prefix}served_ts:{s.experiment}", {s.request_id: s.ts})
            if not s.error:
                pipe.zadd(f"{self.prefix}served_by_version:{s.model_version}", {s.request_id: s.ts})
        pipe.execute()

    # -- feedback ---------------------------------------------------------------------------------
    def _served_for_feedback(self, request_id: str) -> Served | None:
        served = self.lookup(request_id)
        if served is None:  # maybe served by another replica that has not flushed yet
            time.sleep(2 * self._flush_interval)
            served = self._stored(request_id)
        return served

    def _record_feedback(self, request_id: str, item_id: str, event: Event) -> bool:
        self.flush()  # the answer must be stored before feedback that points at it
        added = self._r.sadd(f"{self.prefix}fb:{request_id}", f"{event}{_SEP}{item_id}")
        return bool(added == 0)

    # -- reporting --------------------------------------------------------------------------------
    def _window(
        self, experiment: str | None, since: float | None, until: float | None = None
    ) -> Iterator[tuple[str, str, float, int, list[str], float | None, str | None, bool, str]]:
        """(arm, unit, ts, items shown, feedback events, latency_ms, fallback, error, model version) of every answer
        of the window [since, until) of the experiment (None: every experiment), forced ones left
        out, oldest first; read in pipelined pages."""
        self.flush()
        if experiment is None:
            indexes = list(self._r.scan_iter(match=f"{self.prefix}served_ts:*", count=1000))
        else:
            indexes = [f"{self.prefix}served_ts:{experiment}"]
        ids: list[tuple[str, float]] = []
        for index in indexes:
            ids += self._r.zrangebyscore(
                index,
                "-inf" if since is None else since,
                "+inf" if until is None else f"({until}",
                withscores=True,
            )
        ids.sort(key=lambda pair: pair[1])
        fields = ("arm", "forced", "unit", "items", "latency_ms", "fallback", "error", "model_version")
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            pipe = self._r.pipeline(transaction=False)
            for rid, _ in page:
                pipe.hmget(f"{self.prefix}served:{rid}", *fields)
                pipe.smembers(f"{self.prefix}fb:{rid}")
            replies = pipe.execute()
            for i in range(len(page)):
                (arm, forced, unit, items, latency, fallback, error, version), feedback = (
                    replies[2 * i],
                    replies[2 * i + 1],
                )
                if arm is None or forced == "1":
                    continue
                events = [f.split(_SEP, 1)[0] for f in feedback]
                latency_ms = None if latency is None else float(latency)
                yield (
                    arm,
                    unit,
                    page[i][1],
                    len(json.loads(items)),
                    events,
                    latency_ms,
                    fallback,
                    error == "1",
                    version,
                )

    def _counts(
        self, experiment: str, since: float | None, until: float | None, bucket: int | None
    ) -> dict[int, dict[str, dict[str, int]]]:
        """Aggregated in Python over the window's answers that did not fail (module docstring)."""
        units: dict[tuple[int, str], set[str]] = {}
        out: dict[int, dict[str, dict[str, int]]] = {}
        for arm, unit, ts, n_items, events, _, _, error, _ in self._window(experiment, since, until):
            if error:
                continue
            b = 0 if bucket is None else int(ts // bucket) * bucket
            c = out.setdefault(b, {}).setdefault(arm, dict.fromkeys(ARM_COUNT_KEYS, 0))
            c["requests"] += 1
            c["impressions"] += n_items
            if unit != "anonymous":
                units.setdefault((b, arm), set()).add(unit)
            c["clicks"] += events.count("click")
            c["purchases"] += events.count("purchase")
            c["purchase_requests"] += "purchase" in events
        for b, arms in out.items():
            for arm, c in arms.items():
                c["users"] = len(units.get((b, arm), ()))
        return out

    def answer_rows(
        self, experiment: str | None, since: float | None = None, until: float | None = None
    ) -> AnswerRows:
        """One row per answer of the window (FeedbackStore.answer_rows), over every replica's answers."""
        return AnswerRows.from_rows(
            [
                (
                    arm,
                    unit,
                    ts,
                    n_items,
                    events.count("click"),
                    events.count("purchase"),
                    latency,
                    fallback,
                    error,
                    version,
                )
                for arm, unit, ts, n_items, events, latency, fallback, error, version in self._window(
                    experiment, since, until
                )
            ]
        )

    def served_counts(self, since: float | None = None, until: float | None = None) -> dict[str, int]:
        """Answers served in [since, until) per model version, over every replica (one ZCOUNT a version)."""
        self.flush()
        keys = list(self._r.scan_iter(match=f"{self.prefix}served_by_version:*", count=1000))
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(key, "-inf" if since is None else since, "+inf" if until is None else f"({until}")
        start = len(f"{self.prefix}served_by_version:")
        return {key[start:]: int(n) for key, n in zip(keys, pipe.execute(), strict=True) if n}

    def delete_experiment(self, experiment: str) -> int:
        """Delete the experiment's served answers and their feedback (a reset); returns answers deleted."""
        self.flush()
        index = f"{self.prefix}served_ts:{experiment}"
        ids = self._r.zrange(index, 0, -1)
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            pipe = self._r.pipeline(transaction=False)
            for rid in page:
                pipe.hget(f"{self.prefix}served:{rid}", "model_version")
            versions = pipe.execute()
            pipe = self._r.pipeline(transaction=True)
            for rid, version in zip(page, versions, strict=True):
                if version is not None:
                    pipe.zrem(f"{self.prefix}served_by_version:{version}", rid)
                pipe.unlink(f"{self.prefix}served:{rid}", f"{self.prefix}fb:{rid}")
            pipe.execute()
        self._r.unlink(index)
        return len(ids)

    def close(self) -> None:
        """Stop the writer and send what is buffered: a clean restart loses nothing."""
        self._stop_writer()
        self.flush()
        self._r.close()
