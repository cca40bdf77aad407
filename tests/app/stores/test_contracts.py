"""One contract test class per store Protocol (app/stores/protocols.py), run against every backend.

Each class states what the service relies on from that store; the `backend` fixture (conftest.py) runs
every test once against SQLite (a file in tmp_path) and once against a real redis-server on loopback.
A backend that passes here can replace the other without the service noticing. The experiment
store's contract is in test_experiment_contract.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from app.stores.protocols import ComparisonStore, FeedbackStore, HistoryStore
from app.stores.records import UNIT_SUM_COLUMNS, Comparison, FeedbackError, Interaction, Served


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- HistoryStore -------------------------------------------------------------------------------------


def open_history(backend: tuple[str, Any]) -> HistoryStore:
    kind, where = backend
    if kind == "sqlite":
        from app.stores.history_sqlite import SqliteHistoryStore

        return SqliteHistoryStore(where / "history.sqlite3")
    from app.stores.history_redis import RedisHistoryStore

    return RedisHistoryStore(where)


def rows(interactions: list[Interaction]) -> list[tuple[str, int, str | None]]:
    return [(i.item_id, i.timestamp, i.event) for i in interactions]


class TestHistoryStoreContract:
    def test_history_is_most_recent_last_ties_in_arrival_order_and_limited(
        self, backend: tuple[str, Any]
    ) -> None:
        async def scenario() -> tuple[list[Interaction], list[Interaction], list[Interaction]]:
            store = open_history(backend)
            try:
                await store.append([Interaction("u", "b", 20, "view"), Interaction("u", "a", 10, None)])
                await store.append([Interaction("u", "c", 20, "cart"), Interaction("v", "z", 5, None)])
                return await store.history("u", 10), await store.history("u", 2), await store.history("x", 10)
            finally:
                await store.close()

        full, last2, nobody = run(scenario())
        assert rows(full) == [("a", 10, None), ("b", 20, "view"), ("c", 20, "cart")]
        assert rows(last2) == [("b", 20, "view"), ("c", 20, "cart")]
        assert nobody == []

    def test_appended_events_survive_reopening(self, backend: tuple[str, Any]) -> None:
        async def write() -> None:
            store = open_history(backend)
            await store.append([Interaction("u", "a", 1, "view")])
            await store.close()

        async def read() -> list[Interaction]:
            store = open_history(backend)
            try:
                return await store.history("u", 10)
            finally:
                await store.close()

        run(write())
        assert rows(run(read())) == [("a", 1, "view")]

    def test_seed_once_per_version_replaces_the_old_seed_and_skips_logged_events(
        self, backend: tuple[str, Any]
    ) -> None:
        async def scenario() -> tuple[int, int, int, list[Interaction], list[Interaction]]:
            store = open_history(backend)
            try:
                await store.append([Interaction("u", "a", 5, "view")])  # came back through a retrain
                first = await store.seed("v1", ["u", "u", "w"], ["a", "b", "c"], [5, 6, 7])
                again = await store.seed("v1", ["u"], ["zz"], [9])
                second = store.seed_from_arrays(
                    "v2", np.array(["u"]), np.array(["d"]), np.array([8], np.int64)
                )
                return first, again, second, await store.history("u", 10), await store.history("w", 10)
            finally:
                await store.close()

        first, again, second, u, w = run(scenario())
        assert (first, again, second) == (2, 0, 1)  # (u, a, 5) equals a logged event: not seeded
        assert rows(u) == [("a", 5, "view"), ("d", 8, None)]  # v1's seed rows replaced by v2's
        assert w == []

    def test_an_empty_seed_removes_the_old_one_and_keeps_the_events(self, backend: tuple[str, Any]) -> None:
        async def scenario() -> tuple[int, list[Interaction]]:
            store = open_history(backend)
            try:
                await store.seed("v1", ["u"], ["a"], [1])
                await store.append([Interaction("u", "b", 2, "click")])
                empty = np.zeros(0, str)
                return store.seed_from_arrays("v2", empty, empty, np.zeros(0, np.int64)), await store.history(
                    "u", 5
                )
            finally:
                await store.close()

        added, u = run(scenario())
        assert added == 0 and rows(u) == [("b", 2, "click")]

    def test_seed_rows_keep_their_event_types_and_their_order_in_time_ties(
        self, backend: tuple[str, Any]
    ) -> None:
        async def scenario() -> tuple[int, list[Interaction]]:
            store = open_history(backend)
            try:
                added = store.seed_from_arrays(
                    "v1", np.array(["u", "u", "u", "u"]), np.array(["c", "a", "b", "d"]),
                    np.array([7, 5, 7, 9], np.int64), np.array(["view", "purchase", "", "cart"]),
                )  # fmt: skip
                return added, await store.history("u", 10)
            finally:
                await store.close()

        added, u = run(scenario())
        assert added == 4
        # time order; c and b tie at 7 and keep the order given; "" is no event type
        assert rows(u) == [("a", 5, "purchase"), ("c", 7, "view"), ("b", 7, None), ("d", 9, "cart")]

    def test_reseeding_skips_each_logged_event_exactly_once_and_loses_none(
        self, backend: tuple[str, Any]
    ) -> None:
        """A retrain's log holds the events the service logged (exported, then data.extra_paths): each
        comes back as a seed row, and must be in the history once, as the logged event it is."""

        async def scenario() -> tuple[list[int], list[Interaction], list[Interaction], list[Interaction]]:
            store = open_history(backend)
            try:
                added = [await store.seed("v1", ["u", "w"], ["a", "z"], [1, 1])]
                await store.append([Interaction("u", "b", 5, "click"), Interaction("u", "c", 6, "purchase")])
                await store.append([Interaction("u", "c", 6, "purchase"), Interaction("x", "q", 2, None)])
                # v2's log: u's old row, the three logged events (c twice), a row equal to a logged
                # event but a third time (kept: it was logged twice only), and a new one; w is gone
                added.append(
                    await store.seed(
                        "v2",
                        ["u", "u", "u", "u", "u", "u"],
                        ["a", "b", "c", "c", "c", "d"],
                        [1, 5, 6, 6, 6, 8],
                        ["view", None, "purchase", "purchase", "purchase", "view"],
                    )
                )
                added.append(await store.seed("v2", ["u"], ["zz"], [99]))  # once per version
                return (
                    added,
                    await store.history("u", 10),
                    await store.history("w", 10),
                    await store.history("x", 10),
                )
            finally:
                await store.close()

        added, u, w, x = run(scenario())
        assert added == [2, 3, 0]  # v2: a, the third c, d
        assert rows(u) == [
            ("a", 1, "view"),
            ("b", 5, "click"),  # logged events keep their own event types
            ("c", 6, "purchase"),
            ("c", 6, "purchase"),
            ("c", 6, "purchase"),  # the seed's third c: one more than was logged
            ("d", 8, "view"),
        ]
        assert w == []  # v1's seed of a user v2 does not hold is gone
        assert rows(x) == [("q", 2, None)]  # a logged event outside the seed stays


# -- FeedbackStore ------------------------------------------------------------------------------------


def open_feedback(
    backend: tuple[str, Any], clock: Callable[[], float] | None = None, flush_interval: float = 3600
) -> FeedbackStore:
    """3600 s by default: the writer flushes only when asked (or on close). Redis waits two flush
    intervals for an answer another replica may not have flushed yet, so tests of unknown request ids
    pass a short one."""
    kind, where = backend
    kwargs: dict[str, Any] = {"flush_interval": flush_interval}
    if clock is not None:
        kwargs["clock"] = clock
    if kind == "sqlite":
        from app.stores.feedback_sqlite import SqliteFeedbackStore

        return SqliteFeedbackStore(where / "state.sqlite3", **kwargs)
    from app.stores.feedback_redis import RedisFeedbackStore

    return RedisFeedbackStore(where, **kwargs)


def served(request_id: str, arm: str = "student", unit: str = "user:u1", **kw: Any) -> Served:
    return Served(request_id, "exp", arm, unit, "v1", kw.pop("items", ("i1", "i2", "i3")), **kw)


class TestFeedbackStoreContract:
    def test_an_answer_is_found_before_and_after_it_is_flushed(self, backend: tuple[str, Any]) -> None:
        store = open_feedback(backend, clock=lambda: 100.0)
        try:
            store.log_served(served("r1"))
            assert store.lookup("r1") == served("r1", ts=100.0)  # still in the buffer
            assert store.flush() == 1 and store.flush() == 0
            assert store.lookup("r1") == served("r1", ts=100.0)
            assert store.lookup("nope") is None
        finally:
            store.close()

    def test_feedback_is_validated_against_the_served_answer_naming_the_field(
        self, backend: tuple[str, Any]
    ) -> None:
        store = open_feedback(backend, flush_interval=0.01)
        try:
            store.log_served(served("r1", arm="teacher"))
            first = store.add_feedback("r1", "i2", "click")
            assert (first.arm, first.duplicate) == ("teacher", False)
            assert store.add_feedback("r1", "i2", "click").duplicate
            for args, field in (
                (("unknown", "i1", "click"), "request_id"),
                (("r1", "not-served", "click"), "item_id"),
                (("r1", "i1", "like"), "event"),
            ):
                with pytest.raises(FeedbackError) as exc:
                    store.add_feedback(*args)  # type: ignore[arg-type]
                assert exc.value.field == field
        finally:
            store.close()

    def test_arm_counts_by_hand_leave_forced_requests_out(self, backend: tuple[str, Any]) -> None:
        store = open_feedback(backend, clock=lambda: 50.0)
        try:
            store.log_served(served("s1", items=("a", "b")))
            store.log_served(served("s2", unit="user:u2", items=("a",)))
            store.log_served(served("t1", arm="teacher", unit="anonymous", items=("a", "b", "c")))
            store.log_served(served("f1", arm="teacher", forced=True))  # the testing header
            store.add_feedback("s1", "a", "click")
            store.add_feedback("s1", "b", "click")
            store.add_feedback("s1", "a", "purchase")
            store.add_feedback("t1", "c", "click")
            store.add_feedback("f1", "i1", "purchase")
            counts = store.arm_counts("exp")
            assert store.arm_counts("exp", since=51.0) == {}
            assert store.arm_counts("other") == {}
        finally:
            store.close()
        assert counts == {
            "student": {
                "users": 2,
                "requests": 2,
                "impressions": 3,
                "clicks": 2,
                "purchases": 1,
                "purchase_requests": 1,
            },
            "teacher": {
                "users": 0,
                "requests": 1,
                "impressions": 3,
                "clicks": 1,
                "purchases": 0,
                "purchase_requests": 0,
            },
        }

    def test_bucket_counts_by_hand_split_arm_counts_by_the_answers_time(
        self, backend: tuple[str, Any]
    ) -> None:
        clock = iter([100.0, 130.0, 170.0, 175.0, 185.0])
        store = open_feedback(backend, clock=lambda: next(clock, 999.0))
        try:
            store.log_served(served("a", items=("a", "b")))  # ts 100: bucket 60
            store.log_served(served("b", unit="user:u2", items=("a",)))  # ts 130: bucket 120
            store.log_served(served("c", items=("a", "b", "c")))  # ts 170: bucket 120
            store.log_served(served("d", arm="teacher", unit="user:u3", items=("a",)))  # ts 175
            store.log_served(served("f", arm="teacher", forced=True))  # ts 185, forced: left out
            store.add_feedback("a", "b", "click")  # feedback counts in its answer's bucket
            store.add_feedback("c", "c", "purchase")
            store.add_feedback("c", "a", "click")
            buckets = store.bucket_counts("exp", 60)
            late = store.bucket_counts("exp", 60, since=150.0)
            assert store.bucket_counts("other", 60) == {}
        finally:
            store.close()

        def counts(
            users: int, requests: int, impressions: int, clicks: int, purchases: int
        ) -> dict[str, int]:
            return {
                "users": users, "requests": requests, "impressions": impressions,
                "clicks": clicks, "purchases": purchases, "purchase_requests": min(purchases, 1),
            }  # fmt: skip

        assert buckets == {
            60: {"student": counts(1, 1, 2, 1, 0)},
            120: {"student": counts(2, 2, 4, 1, 1), "teacher": counts(1, 1, 1, 0, 0)},
        }
        assert late == {120: {"student": counts(1, 1, 3, 1, 1), "teacher": counts(1, 1, 1, 0, 0)}}

    def test_unit_sums_by_hand_one_row_per_randomised_unit(self, backend: tuple[str, Any]) -> None:
        clock = iter([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0])
        store = open_feedback(backend, clock=lambda: next(clock, 99.0))
        try:
            store.log_served(served("s1", unit="user:u2", items=("a", "b")))  # ts 10
            store.log_served(served("s2", unit="user:u1", items=("a",)))  # ts 11
            store.log_served(served("s3", unit="user:u2", items=("a", "b", "c")))  # ts 12
            store.log_served(served("t1", arm="teacher", unit="session:x", items=("a", "b", "c")))
            store.log_served(served("n1", unit="anonymous", items=("a",)))  # never randomised: left out
            store.log_served(served("f1", arm="teacher", unit="user:u1", forced=True))  # forced: left out
            store.add_feedback("s1", "a", "click")
            store.add_feedback("s1", "a", "click")  # a double click counts once
            store.add_feedback("s1", "b", "click")
            store.add_feedback("s1", "a", "purchase")
            store.add_feedback("s3", "c", "purchase")
            store.add_feedback("s3", "b", "purchase")
            store.add_feedback("t1", "c", "click")
            store.add_feedback("n1", "a", "click")
            store.add_feedback("f1", "i1", "click")
            sums, late = store.unit_sums("exp"), store.unit_sums("exp", since=11.5)
            assert store.unit_sums("other") == {}
        finally:
            store.close()
        assert set(sums) == {"student", "teacher"}
        student, teacher = sums["student"], sums["teacher"]
        assert student.units.tolist() == ["user:u1", "user:u2"]  # sorted by unit
        # columns: requests, impressions, clicks, purchases, answers with a purchase
        assert [getattr(student, c).tolist() for c in UNIT_SUM_COLUMNS] == [
            [1, 2], [1, 5], [0, 2], [0, 3], [0, 2],
        ]  # fmt: skip
        assert all(getattr(student, c).dtype == np.int64 for c in UNIT_SUM_COLUMNS)
        assert teacher.units.tolist() == ["session:x"]
        assert [getattr(teacher, c).tolist() for c in UNIT_SUM_COLUMNS] == [[1], [3], [1], [0], [0]]
        assert late["student"].units.tolist() == ["user:u2"]  # s3 only (ts 12)
        assert late["student"].impressions.tolist() == [3] and late["student"].purchases.tolist() == [2]

    def test_answer_rows_carry_latency_fallback_and_failures(self, backend: tuple[str, Any]) -> None:
        """One row per answer, oldest first, forced ones left out; failed answers are rows but not
        answers (no counts, no unit sums, no served counts); experiment None reads every experiment."""
        clock = iter([10.0, 11.0, 12.0, 13.0, 14.0])
        store = open_feedback(backend, clock=lambda: next(clock, 99.0))
        try:
            store.log_served(served("a1", items=("a", "b"), latency_ms=2.5))  # ts 10
            store.log_served(served("a2", arm="teacher", unit="user:u2", fallback="popular"))  # ts 11
            store.log_served(served("e1", arm="teacher", unit="user:u2", items=(), error=True))  # ts 12
            store.log_served(served("f1", forced=True))  # ts 13: forced, never a row
            store.log_served(Served("o1", "other", "student", "user:u1", "v1", ("a",)))  # ts 14
            store.add_feedback("a1", "b", "click")
            store.add_feedback("a1", "b", "purchase")
            rows, every = store.answer_rows("exp"), store.answer_rows(None, since=11.0)
            counts, sums, by_version = store.arm_counts("exp"), store.unit_sums("exp"), store.served_counts()
        finally:
            store.close()
        assert rows.arm.tolist() == ["student", "teacher", "teacher"] and rows.ts.tolist() == [
            10.0,
            11.0,
            12.0,
        ]
        assert rows.unit.tolist() == ["user:u1", "user:u2", "user:u2"] and rows.version.tolist() == ["v1"] * 3
        assert (rows.impressions.tolist(), rows.clicks.tolist(), rows.purchases.tolist()) == (
            [2, 3, 0],
            [1, 0, 0],
            [1, 0, 0],
        )
        assert rows.latency_ms[0] == 2.5 and np.isnan(rows.latency_ms[1:]).all()  # unknown: NaN, never 0
        assert rows.fallback.tolist() == [False, True, False] and rows.error.tolist() == [False, False, True]
        assert every.ts.tolist() == [11.0, 12.0, 14.0]  # both experiments, from t = 11
        assert counts["teacher"]["requests"] == 1 and sums["teacher"].requests.tolist() == [1]
        assert by_version == {"v1": 4}  # a1, a2, f1, o1: a failed answer is not a served one

    def test_close_stores_what_is_buffered(self, backend: tuple[str, Any]) -> None:
        store = open_feedback(backend)
        store.log_served(served("r1"))
        store.close()
        reopened = open_feedback(backend)
        try:
            assert reopened.lookup("r1") is not None
            assert reopened.add_feedback("r1", "i1", "purchase").duplicate is False
        finally:
            reopened.close()


# -- ComparisonStore ----------------------------------------------------------------------------------


def open_comparisons(backend: tuple[str, Any]) -> ComparisonStore:
    kind, where = backend
    if kind == "sqlite":
        from app.stores.comparisons_sqlite import SqliteComparisonStore

        return SqliteComparisonStore(where / "state.sqlite3")
    from app.stores.comparisons_redis import RedisComparisonStore

    return RedisComparisonStore(where)


def comparison(request_id: str, ts: float, tau: float | None = 0.5) -> Comparison:
    return Comparison(request_id, ts, "v1", "v1", 10, 0.8, 0.7, tau, 0.9, 1.0, 5.0)


class TestComparisonStoreContract:
    def test_comparisons_and_failures_load_oldest_first_from_since(self, backend: tuple[str, Any]) -> None:
        store = open_comparisons(backend)
        try:
            assert len(store.load()) == 0
            store.add([comparison("b", 20.0, tau=None), comparison("a", 10.0)])
            store.add([])
            store.add_failures({("v1", "timeout"): 2, ("v1", "dropped"): 0}, ts=15.0)
            store.add_failures({("v1", "timeout"): 1, ("v1", "error"): 3}, ts=25.0)
            everything, recent = store.load(), store.load(since=15.0)
        finally:
            store.close()
        assert len(everything) == 2
        np.testing.assert_array_equal(
            everything.metrics["kendall_tau"], [0.5, np.nan]
        )  # ts order; None is NaN
        assert everything.student_latency_ms.tolist() == [1.0, 1.0]
        assert everything.ts.tolist() == [10.0, 20.0] and recent.ts.tolist() == [20.0]
        assert everything.failures == {("v1", "timeout"): 3, ("v1", "error"): 3}
        assert len(recent) == 1 and recent.failures == {("v1", "timeout"): 3, ("v1", "error"): 3}
        assert store_kinds_agree(recent)


def store_kinds_agree(rows: Any) -> bool:
    """Both backends return the same column types (numpy arrays the report aggregates)."""
    return (
        rows.student_version.dtype.kind == "U"
        and rows.teacher_latency_ms.dtype == np.float64
        and rows.ts.dtype == np.float64
    )
