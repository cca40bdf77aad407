"""The served-answer log and feedback store: validation, durability across a restart, per-arm counts."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from app.stores.feedback_sqlite import SqliteFeedbackStore
from app.stores.records import FeedbackError, Served


def _served(request_id: str, arm: str, unit: str, items: tuple[str, ...], forced: bool = False) -> Served:
    return Served(request_id, "exp", arm, unit, "v1", items, forced=forced)


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteFeedbackStore(tmp_path / "state.sqlite3", flush_interval=3600)  # flushes only when asked
    yield s
    s.close()


def test_feedback_on_an_unflushed_answer_is_accepted(store: SqliteFeedbackStore) -> None:
    store.log_served(_served("r1", "student", "user:u1", ("a", "b", "c")))
    result = store.add_feedback("r1", "b", "click")
    assert (result.arm, result.duplicate) == ("student", False)
    assert store.add_feedback("r1", "b", "click").duplicate is True


def test_unknown_request_and_foreign_item_are_rejected_with_the_field(store: SqliteFeedbackStore) -> None:
    store.log_served(_served("r1", "student", "user:u1", ("a", "b")))
    with pytest.raises(FeedbackError, match="unknown request id 'nope'") as unknown:
        store.add_feedback("nope", "a", "click")
    assert unknown.value.field == "request_id"
    with pytest.raises(FeedbackError, match="item 'z' was not in the answer") as foreign:
        store.add_feedback("r1", "z", "click")
    assert foreign.value.field == "item_id"
    with pytest.raises(FeedbackError) as bad_event:
        store.add_feedback("r1", "a", "like")  # type: ignore[arg-type]
    assert bad_event.value.field == "event"


def test_served_log_and_feedback_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = SqliteFeedbackStore(path, flush_interval=3600)
    first.log_served(_served("r1", "teacher", "user:u1", ("a", "b")))
    first.log_served(_served("r2", "student", "session:s9", ("c",)))
    first.add_feedback("r1", "a", "purchase")
    first.close()  # r2 was never flushed explicitly: close must commit it

    second = SqliteFeedbackStore(path, flush_interval=3600)
    try:
        r2 = second.lookup("r2")
        assert r2 is not None and (r2.arm, r2.unit, r2.items) == ("student", "session:s9", ("c",))
        assert second.add_feedback("r2", "c", "click").arm == "student"
        assert second.add_feedback("r1", "a", "purchase").duplicate is True  # the first one was kept
    finally:
        second.close()


def test_background_writer_commits_without_being_asked(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteFeedbackStore(path, flush_interval=0.01)
    store.log_served(_served("r1", "student", "user:u1", ("a",)))
    for _ in range(500):  # polls the outcome, not the clock: the writer must empty the buffer
        if not store._pending:
            break
        time.sleep(0.01)
    assert not store._pending
    store.close()


def test_arm_counts_by_hand(store: SqliteFeedbackStore) -> None:
    store.log_served(_served("r1", "student", "user:u1", ("a", "b", "c")))
    store.log_served(_served("r2", "student", "user:u1", ("a", "d")))
    store.log_served(_served("r3", "student", "anonymous", ("a",)))
    store.log_served(_served("r4", "teacher", "user:u2", ("x", "y")))
    store.log_served(_served("r5", "teacher", "user:u9", ("x",), forced=True))  # not in the split
    store.add_feedback("r1", "a", "click")
    store.add_feedback("r1", "a", "click")  # a double click counts once
    store.add_feedback("r1", "b", "click")
    store.add_feedback("r1", "b", "purchase")
    store.add_feedback("r4", "y", "click")
    store.add_feedback("r5", "x", "click")  # forced: left out
    counts = store.arm_counts("exp")
    assert counts == {
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
    assert store.arm_counts("other-experiment") == {}


class _CommitGate:
    """Wraps the store's sqlite3 connection so COMMIT waits on an event: a disk that is slow to fsync."""

    def __init__(self, conn: object) -> None:
        self._conn = conn
        self.committing, self.release = threading.Event(), threading.Event()

    def execute(self, sql: str, *args: object) -> object:
        if sql == "COMMIT":
            self.committing.set()
            assert self.release.wait(10.0), "the test never released the commit"
        return self._conn.execute(sql, *args)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def test_log_served_does_not_block_while_a_flush_commits(store: SqliteFeedbackStore) -> None:
    """Regression (found under the service benchmark): flush held the buffer lock through INSERT + COMMIT (fsync), so
    log_served on the event loop stalled on the disk. Now only the in-flight batch waits for it."""
    gate = _CommitGate(store._conn)
    store._conn = gate  # type: ignore[assignment]
    store.log_served(_served("r1", "student", "user:u1", ("a",)))
    flusher = threading.Thread(target=store.flush)
    flusher.start()
    assert gate.committing.wait(10.0)  # the flush is now inside COMMIT, holding the connection
    logger = threading.Thread(target=store.log_served, args=(_served("r2", "teacher", "user:u2", ("b",)),))
    logger.start()
    logger.join(10.0)
    blocked = logger.is_alive()
    in_flight, buffered = store.lookup("r1"), store.lookup("r2")  # neither touches the connection
    gate.release.set()
    flusher.join(10.0)
    assert not blocked, "log_served waited for the commit"
    assert in_flight is not None and in_flight.items == ("a",)
    assert buffered is not None and buffered.arm == "teacher"
    assert store.flush() == 1  # r2 stayed buffered and is written by the next flush
    assert store._conn.execute("SELECT request_id FROM served ORDER BY request_id").fetchall() == [
        ("r1",),
        ("r2",),
    ]


def test_failed_flush_keeps_the_answers_buffered(store: SqliteFeedbackStore) -> None:
    """A commit that fails puts the batch back: the answers are retried, never silently lost."""

    class FailingCommit:
        def __init__(self, conn: object) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return self._conn.execute(sql, *args)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    real = store._conn
    store._conn = FailingCommit(real)  # type: ignore[assignment]
    store.log_served(_served("r1", "student", "user:u1", ("a",)))
    with pytest.raises(sqlite3.OperationalError):
        store.flush()
    assert store.lookup("r1") is not None and "r1" in store._pending
    store._conn = real
    assert store.flush() == 1 and store.lookup("r1") is not None and not store._pending


def test_a_long_outage_drops_the_oldest_waiting_answers_past_the_bound_and_counts_them(
    store: SqliteFeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the store cannot be written answers wait in memory, at most `max_buffered`: the oldest
    beyond it are dropped and counted (never the replica's memory); the newest are stored later."""
    monkeypatch.setattr(store, "max_buffered", 3)
    for i in range(5):
        store.log_served(_served(f"r{i}", "student", f"user:u{i}", ("a",)))
    assert store.dropped == 2 and list(store._pending) == ["r2", "r3", "r4"]
    assert store.lookup("r0") is None and store.lookup("r4") is not None

    def failing_write(batch: list[Served]) -> None:  # answers keep arriving while the write fails
        store.log_served(_served("r5", "student", "user:u5", ("a",)))
        store.log_served(_served("r6", "student", "user:u6", ("a",)))
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_write", failing_write)
    with pytest.raises(sqlite3.OperationalError):
        store.flush()  # the batch comes back beside the two newer answers: the two oldest go
    assert store.dropped == 4 and list(store._pending) == ["r4", "r5", "r6"]
    monkeypatch.undo()
    assert store.flush() == 3 and store.lookup("r6") is not None and store.lookup("r3") is None
