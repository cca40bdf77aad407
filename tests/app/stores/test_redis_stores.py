"""The Redis stores against a real redis-server: histories, served answers + feedback, comparisons."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.stores.records import Comparison, FeedbackError, Interaction, Served
from tests.redis_server import redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def url(server: str) -> str:
    import redis

    redis.Redis.from_url(server).flushall()
    return server


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_history_orders_by_time_then_arrival_and_honours_limit(url: str) -> None:
    from app.stores.history_redis import RedisHistoryStore

    async def scenario() -> list[list[tuple[str, int, str | None]]]:
        store = RedisHistoryStore(url)
        try:
            await store.append([Interaction("u", "b", 20, "view"), Interaction("u", "a", 10, None)])
            await store.append([Interaction("u", "c", 20, "cart"), Interaction("v", "z", 5, None)])
            full = await store.history("u", 10)
            last2 = await store.history("u", 2)
            none = await store.history("nobody", 10)
        finally:
            await store.close()
        return [[(i.item_id, i.timestamp, i.event) for i in rows] for rows in (full, last2, none)]

    full, last2, none = run(scenario())
    assert full == [
        ("a", 10, None),
        ("b", 20, "view"),
        ("c", 20, "cart"),
    ]  # b before c: arrival order at ts 20
    assert last2 == [("b", 20, "view"), ("c", 20, "cart")]
    assert none == []


def test_seed_once_per_version_replaces_the_old_seed_and_skips_logged_events(url: str) -> None:
    from app.stores.history_redis import RedisHistoryStore

    async def scenario() -> tuple[int, int, int, list[tuple[str, int]], list[tuple[str, int]]]:
        store = RedisHistoryStore(url)
        try:
            await store.append([Interaction("u", "x", 15, "view")])
            first = await store.seed("v1", ["u", "u", "w"], ["p", "x", "q"], [10, 15, 30])
            again = await store.seed("v1", ["u"], ["zzz"], [1])
            after_v1 = [(i.item_id, i.timestamp) for i in await store.history("u", 10)]
            second = await store.seed("v2", ["u"], ["r"], [12])
            after_v2 = [(i.item_id, i.timestamp) for i in await store.history("u", 10)]
        finally:
            await store.close()
        return first, again, second, after_v1, after_v2

    first, again, second, after_v1, after_v2 = run(scenario())
    assert (first, again, second) == (2, 0, 1)  # u/x/15 equals a logged event: not counted twice
    assert after_v1 == [("p", 10), ("x", 15)]
    assert after_v2 == [("r", 12), ("x", 15)]  # v1's seed rows gone, the logged event kept


def _served(
    rid: str, arm: str, unit: str, items: tuple[str, ...], forced: bool = False, ts: float = 100.0
) -> Served:
    return Served(rid, "exp", arm, unit, "v1", items, forced, ts)


def test_feedback_validation_and_arm_counts_across_two_replicas(url: str) -> None:
    from app.stores.feedback_redis import RedisFeedbackStore

    a, b = RedisFeedbackStore(url, flush_interval=0.01), RedisFeedbackStore(url, flush_interval=0.01)
    try:
        a.log_served(_served("r1", "student", "user:u1", ("a", "b", "c")))
        a.log_served(_served("r2", "student", "user:u1", ("a", "d")))
        b.log_served(_served("r3", "student", "anonymous", ("a",)))
        b.log_served(_served("r4", "teacher", "user:u2", ("x", "y"), ts=200.0))
        b.log_served(_served("r5", "teacher", "user:u9", ("x",), forced=True))
        a.flush()
        b.flush()
        assert b.add_feedback("r1", "a", "click").duplicate is False  # served by a, feedback to b
        assert a.add_feedback("r1", "a", "click").duplicate is True  # a double click counts once
        a.add_feedback("r1", "b", "click")
        b.add_feedback("r1", "b", "purchase")
        a.add_feedback("r4", "y", "click")
        a.add_feedback("r5", "x", "click")  # forced: left out
        with pytest.raises(FeedbackError, match="unknown request id 'nope'") as err:
            a.add_feedback("nope", "a", "click")
        assert err.value.field == "request_id"
        with pytest.raises(FeedbackError, match="item 'z' was not in the answer") as err:
            b.add_feedback("r1", "z", "click")
        assert err.value.field == "item_id"
        expected = {
            "student": {
                "users": 1,
                "requests": 3,
                "impressions": 6,
                "clicks": 2,
                "purchases": 1,
                "purchase_requests": 1,
            },
            "teacher": {
                "users": 1,
                "requests": 1,
                "impressions": 2,
                "clicks": 1,
                "purchases": 0,
                "purchase_requests": 0,
            },
        }
        assert a.arm_counts("exp") == expected == b.arm_counts("exp")
        assert set(a.arm_counts("exp", since=150.0)) == {"teacher"}
        assert a.arm_counts("other") == {}
    finally:
        a.close()
        b.close()


def test_feedback_on_an_answer_another_replica_has_not_flushed_yet_is_retried(url: str) -> None:
    from app.stores.feedback_redis import RedisFeedbackStore

    a = RedisFeedbackStore(url, flush_interval=0.02)
    b = RedisFeedbackStore(url, flush_interval=0.02)
    try:
        a.log_served(_served("r1", "student", "user:u1", ("a",)))  # a's writer flushes within 20 ms
        assert b.add_feedback("r1", "a", "click").arm == "student"  # b waits two intervals, then finds it
    finally:
        a.close()
        b.close()


class _GatedClient:
    """The store's Redis client, except that a pipeline's `execute` waits until the test releases it
    (or raises `fail`): the flush is then held inside its Redis round trip."""

    def __init__(self, client: object, fail: BaseException | None = None) -> None:
        self._client, self.fail = client, fail
        self.executing, self.release = threading.Event(), threading.Event()

    def pipeline(self, *args: object, **kwargs: object) -> object:
        pipe = self._client.pipeline(*args, **kwargs)  # type: ignore[attr-defined]
        execute = pipe.execute

        def gated_execute(*a: object, **kw: object) -> object:
            self.executing.set()
            if self.fail is not None:
                raise self.fail
            assert self.release.wait(10.0), "the test never released the round trip"
            return execute(*a, **kw)

        pipe.execute = gated_execute
        return pipe

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def test_log_served_does_not_block_while_a_redis_flush_is_in_flight(url: str) -> None:
    """Regression: RedisFeedbackStore.flush held `_lock` across the Redis round trip while log_served,
    called on the event loop, waited for the same lock (the bug fixed earlier in FeedbackStore.flush).
    Now the buffer is swapped out under the lock and written outside it; lookup sees the batch."""
    import redis

    from app.stores.feedback_redis import RedisFeedbackStore

    store = RedisFeedbackStore(url, flush_interval=3600)  # flushes only when asked
    real = store._r
    gate = _GatedClient(real)
    store._r = gate  # type: ignore[assignment]
    try:
        store.log_served(_served("r1", "student", "user:u1", ("a",)))
        flusher = threading.Thread(target=store.flush)
        flusher.start()
        assert gate.executing.wait(10.0)  # the flush is now inside its round trip
        logger = threading.Thread(
            target=store.log_served, args=(_served("r2", "teacher", "user:u2", ("b",)),)
        )
        logger.start()
        logger.join(5.0)
        if logger.is_alive():
            gate.release.set()  # let the stuck flush finish before failing
            pytest.fail("log_served waited for the Redis round trip")
        in_flight, buffered = store.lookup("r1"), store.lookup("r2")  # neither goes to Redis
        gate.release.set()
        flusher.join(10.0)
        assert in_flight is not None and in_flight.items == ("a",)
        assert buffered is not None and buffered.arm == "teacher"
        assert store.flush() == 1  # r2 stayed buffered and is written by the next flush
        check = redis.Redis.from_url(url, decode_responses=True)
        assert check.hget("recdistill:served:r1", "arm") == "student"
        assert check.hget("recdistill:served:r2", "arm") == "teacher"
    finally:
        gate.release.set()
        store._r = real
        store.close()


def test_a_failed_redis_flush_keeps_the_answers_buffered(url: str) -> None:
    """A round trip that fails puts the batch back: the answers are retried, never silently lost."""
    import redis

    from app.stores.feedback_redis import RedisFeedbackStore

    store = RedisFeedbackStore(url, flush_interval=3600)
    real = store._r
    store._r = _GatedClient(real, fail=redis.ConnectionError("connection reset"))  # type: ignore[assignment]
    try:
        store.log_served(_served("r1", "student", "user:u1", ("a",)))
        with pytest.raises(redis.ConnectionError):
            store.flush()
        store.log_served(_served("r2", "teacher", "user:u2", ("b",)))
        assert store.lookup("r1") is not None and set(store._pending) == {"r1", "r2"}
        store._r = real
        assert store.flush() == 2 and not store._pending
        assert store.add_feedback("r1", "a", "click").arm == "student"
    finally:
        store._r = real
        store.close()


def test_comparisons_round_trip_and_aggregate_failures(url: str) -> None:
    from app.stores.comparisons_redis import RedisComparisonStore

    one, two = RedisComparisonStore(url), RedisComparisonStore(url)
    try:
        one.add([Comparison("r1", 10.0, "s1", "t1", 10, 0.8, 0.7, None, 0.9, 1.5, 4.0)])
        two.add([Comparison("r2", 20.0, "s1", "t1", 10, 0.6, 0.5, 0.2, 0.7, 1.0, 3.0)])
        one.add_failures({("s1", "dropped"): 2, ("s1", "timeout"): 0}, ts=15.0)
        two.add_failures({("s1", "dropped"): 1}, ts=25.0)
        rows = one.load()
        assert len(rows) == 2 and rows.student_version.tolist() == ["s1", "s1"]
        assert rows.metrics["overlap"].tolist() == [0.8, 0.6]
        assert rows.metrics["kendall_tau"][0] != rows.metrics["kendall_tau"][0]  # None -> NaN
        assert rows.teacher_latency_ms.tolist() == [4.0, 3.0]
        assert rows.failures == {("s1", "dropped"): 3}
        later = two.load(since=18.0)
        assert later.metrics["rbo"].tolist() == [0.5] and later.failures == {("s1", "dropped"): 1}
        empty = one.load(since=100.0)
        assert len(empty) == 0 and empty.failures == {}
    finally:
        one.close()
        two.close()


def test_unreachable_redis_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from app.stores.history_redis import RedisHistoryStore
    from app.stores.redis_client import RedisUnavailable

    with pytest.raises(
        RedisUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0: cannot reach redis"
    ) as err:
        RedisHistoryStore("redis://:hunter2@127.0.0.1:1/0", timeout=0.5)
    assert "hunter2" not in str(err.value)


def test_settings_refuse_redis_without_a_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RECDISTILL_HISTORY_BACKEND=redis needs RECDISTILL_REDIS_URL"):
        Settings(history_backend="redis", history_db=tmp_path / "h.sqlite3")


def test_weak_redis_durability_is_logged(url: str, caplog: pytest.LogCaptureFixture) -> None:
    from app.stores.history_redis import RedisHistoryStore

    with caplog.at_level(logging.WARNING, logger="app.stores.history_redis"):
        store = RedisHistoryStore(url)
    run(store.close())
    assert "appendonly=no appendfsync=" in caplog.text
