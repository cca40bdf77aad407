"""The shadow runner on the tiny model: comparisons, a failing / slow teacher, a full queue, sampling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.recommender import Query, Result, recommend_batch
from app.experiment.shadow import CancellableSession, ShadowJob, ShadowRunner
from app.experiment.shadow_process import TeacherShed
from app.stores.comparisons_sqlite import SqliteComparisonStore
from core.manifest import HISTORY_INPUT, USER_INPUT, USER_VECTOR_OUTPUT
from tests.fixtures.tiny_model import build_tiny_version, build_version, tiny_arrays


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_version(build_tiny_version(tmp_path_factory.mktemp("models")))


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteComparisonStore(tmp_path / "state.sqlite3")
    yield s
    s.close()


def _job(model: LoadedModel, request_id: str = "r1", user: int | None = 0, k: int = 4) -> ShadowJob:
    query = Query(model=model, history=np.array([0], np.int64), k=k, user=user)  # history [i00]
    (student,) = recommend_batch([query])
    items = tuple(model.item_ids[student.indices].tolist())
    return ShadowJob(request_id, query, items, student_latency_ms=0.5)


def test_teacher_that_agrees_scores_perfect_agreement(
    model: LoadedModel, store: SqliteComparisonStore
) -> None:
    runner = ShadowRunner(store, rate=1.0, timeout_ms=10_000)
    runner.start()
    job = _job(model)
    # The fixture's documented answer for history [i00].
    assert job.student_items == ("i09", "i06", "i03", "i00")
    assert runner.submit(job)
    assert runner.wait_idle()
    runner.stop()
    rows = store.load()
    assert len(rows) == 1
    assert {name: col[0] for name, col in rows.metrics.items()} == pytest.approx(
        {"overlap": 1.0, "rbo": 1.0, "kendall_tau": 1.0, "ndcg": 1.0}
    )
    assert rows.student_version.tolist() == rows.teacher_version.tolist() == ["v1"]
    assert rows.student_latency_ms[0] == 0.5 and rows.teacher_latency_ms[0] > 0
    assert runner.counts["compared"] == 1


def test_teacher_that_disagrees_is_measured(tmp_path: Path, store: SqliteComparisonStore) -> None:
    # The teacher adds a strong "books" bias for user u0, so it answers i10, i07, i04, i01 where the
    # student answers i09, i06, i03, i00: nothing shared -> overlap 0, RBO 0, NDCG 0, tau undefined.
    arrays = tiny_arrays()
    bias = np.zeros((len(arrays.user_ids) + 1, arrays.dim), np.float32)
    bias[0, 1] = 100.0
    arrays.teacher_user_bias = bias
    disagreeing = load_version(build_version(tmp_path / "models", "v2", arrays))
    runner = ShadowRunner(store, rate=1.0, timeout_ms=10_000)
    runner.start()
    runner.submit(_job(disagreeing))
    assert runner.wait_idle()
    runner.stop()
    rows = store.load()
    assert [rows.metrics[m][0] for m in ("overlap", "rbo", "ndcg")] == [0.0, 0.0, 0.0]
    assert np.isnan(rows.metrics["kendall_tau"][0])


def test_teacher_that_raises_is_counted_not_raised(model: LoadedModel, store: SqliteComparisonStore) -> None:
    def broken(query: Query, run_options: ort.RunOptions) -> Result:
        raise RuntimeError("teacher exploded")

    runner = ShadowRunner(store, rate=1.0, teacher_fn=broken)
    runner.start()
    assert runner.submit(_job(model, "a")) and runner.submit(_job(model, "b"))
    assert runner.wait_idle()
    runner.stop()
    assert runner.counts["error"] == 2 and runner.counts["compared"] == 0
    rows = store.load()
    assert len(rows) == 0 and rows.failures == {("v1", "error"): 2}


def test_teacher_past_its_timeout_is_counted_and_discarded(
    model: LoadedModel, store: SqliteComparisonStore
) -> None:
    never = threading.Event()

    def slow(query: Query, run_options: ort.RunOptions) -> Result:
        never.wait(0.3)  # far past the 20 ms timeout
        return recommend_batch([query])[0]

    runner = ShadowRunner(store, rate=1.0, timeout_ms=20, teacher_fn=slow)
    runner.start()
    runner.submit(_job(model))
    assert runner.wait_idle()
    runner.stop()
    assert runner.counts["timeout"] == 1 and runner.counts["compared"] == 0
    assert store.load().failures == {("v1", "timeout"): 1}


def test_full_queue_drops_and_counts(model: LoadedModel, store: SqliteComparisonStore) -> None:
    started, release = threading.Event(), threading.Event()

    def blocked(query: Query, run_options: ort.RunOptions) -> Result:
        started.set()
        release.wait(5.0)
        return recommend_batch([query])[0]

    runner = ShadowRunner(store, rate=1.0, queue_size=2, timeout_ms=10_000, teacher_fn=blocked)
    runner.start()
    assert runner.submit(_job(model, "busy"))
    assert started.wait(5.0)  # the worker holds job 1; the queue is empty again
    assert runner.submit(_job(model, "q1")) and runner.submit(_job(model, "q2"))
    assert runner.submit(_job(model, "overflow")) is False  # returns at once, never blocks
    release.set()
    assert runner.wait_idle()
    runner.stop()
    assert (runner.counts["dropped"], runner.counts["compared"]) == (1, 3)
    assert store.load().failures == {("v1", "dropped"): 1}


def test_sampling_is_deterministic_and_close_to_the_rate(
    model: LoadedModel, store: SqliteComparisonStore
) -> None:
    half = ShadowRunner(store, rate=0.5)
    picks = [half.sampled(f"req-{i}") for i in range(4000)]
    assert picks == [ShadowRunner(store, rate=0.5).sampled(f"req-{i}") for i in range(4000)]
    assert 1800 < sum(picks) < 2200  # 4 sigma around 2000
    assert not any(ShadowRunner(store, rate=0.0).sampled(f"req-{i}") for i in range(100))
    off = ShadowRunner(store, rate=0.0)
    off.start()  # rate 0 starts no worker
    assert off.submit(_job(model)) is False and off.counts == {}


def test_rate_outside_unit_interval_is_rejected(store: SqliteComparisonStore) -> None:
    with pytest.raises(ValueError, match="shadow rate"):
        ShadowRunner(store, rate=1.5)


def test_cancellable_session_passes_the_run_options(model: LoadedModel) -> None:
    local = threading.local()
    session = CancellableSession(model.teacher.user, local)
    feeds = {
        HISTORY_INPUT: np.full((1, model.teacher.history_len), model.teacher.padding_value, np.int64),
        USER_INPUT: np.array([0], np.int64),
    }
    assert session.run([USER_VECTOR_OUTPUT], feeds)[0].shape == (1, model.teacher.item_vectors.shape[1])
    local.run_options = ort.RunOptions()
    local.run_options.terminate = True  # what the timeout timer does
    with pytest.raises(Exception, match="(?i)terminat"):
        session.run([USER_VECTOR_OUTPUT], feeds)


def test_default_teacher_uses_its_own_sessions(model: LoadedModel, store: SqliteComparisonStore) -> None:
    runner = ShadowRunner(store, rate=1.0)
    shadow = runner._shadow_model(model)
    assert shadow.teacher.user is not model.teacher.user
    assert shadow.teacher.scores is not None and shadow.teacher.scores is not model.teacher.scores
    assert shadow.student is model.student and shadow.item_ids is model.item_ids
    assert runner._shadow_model(model) is shadow  # built once per version


def test_sessions_of_the_previous_version_are_kept_for_queued_jobs(
    model: LoadedModel, tmp_path: Path, store: SqliteComparisonStore
) -> None:
    newer = load_version(build_tiny_version(tmp_path / "models", "v2"))
    newest = load_version(build_tiny_version(tmp_path / "models", "v3"))
    runner = ShadowRunner(store, rate=1.0)
    old_shadow = runner._shadow_model(model)
    runner._shadow_model(newer)
    assert runner._shadow_model(model) is old_shadow  # not rebuilt
    runner._shadow_model(newest)
    assert [served.version for served, _ in runner._shadows] == ["v2", "v3"]  # at most two kept


def test_watchdog_terminates_a_real_onnxruntime_run(model: LoadedModel, store: SqliteComparisonStore) -> None:
    feeds = {
        HISTORY_INPUT: np.zeros((1, model.teacher.history_len), np.int64),
        USER_INPUT: np.array([0], np.int64),
    }
    terminated = threading.Event()

    def endless(query: Query, run_options: ort.RunOptions) -> Result:
        for _ in range(1_000_000):  # runs until the watchdog sets run_options.terminate
            try:
                model.teacher.user.run([USER_VECTOR_OUTPUT], feeds, run_options)
            except Exception:
                terminated.set()
                raise
        return recommend_batch([query])[0]

    runner = ShadowRunner(store, rate=1.0, timeout_ms=30, teacher_fn=endless)
    runner.start()
    runner.submit(_job(model))
    assert runner.wait_idle(timeout=60.0)
    runner.stop()
    assert terminated.is_set() and runner.counts["timeout"] == 1


def test_a_teacher_over_its_cpu_budget_counts_as_dropped_and_pauses_the_shadow(
    model: LoadedModel, store: SqliteComparisonStore
) -> None:
    calls: list[str] = []

    def shed(query: Query, run_options: ort.RunOptions) -> Result:
        calls.append("run")
        raise TeacherShed(resume_at=time.monotonic() + 3600.0)  # no budget for an hour

    runner = ShadowRunner(store, rate=1.0, teacher_fn=shed)
    runner.start()
    assert runner.submit(_job(model, "a"))
    assert runner.wait_idle()
    assert runner.submit(_job(model, "b")) is False  # dropped on the request path, never sent
    runner.stop()
    assert calls == ["run"]
    assert (runner.counts["dropped"], runner.counts["error"], runner.counts["compared"]) == (2, 0, 0)
    assert store.load().failures == {("v1", "dropped"): 2}
