"""The shadow teacher's child process: same answers as the in-process teacher, idle CPU
priority, timeouts that discard the late answer, and errors that name their cause."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.recommender import Query, recommend_batch
from app.experiment.shadow_process import TeacherProcess, TeacherProcessError, TeacherShed
from core.manifest import ManifestError
from tests.fixtures.tiny_model import build_tiny_version


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_version(build_tiny_version(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def child() -> Iterator[TeacherProcess]:
    proc = TeacherProcess()
    yield proc
    proc.close()


def _query(model: LoadedModel, history: list[int], user: int | None = 0, k: int = 4) -> Query:
    return Query(model=model, history=np.array(history, np.int64), k=k, user=user)


def test_the_child_answers_as_the_in_process_teacher(model: LoadedModel, child: TeacherProcess) -> None:
    for history, user in (([0], 0), ([1, 4], 3), ([0], None)):
        query = _query(model, history, user)
        (expected,) = recommend_batch([replace(query, side="teacher")])
        got = child.run(query, ort.RunOptions())
        assert got.indices.tolist() == expected.indices.tolist()
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
        assert got.fallback is None
    assert child.versions() == [str(model.path)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is a Linux scheduling policy")
def test_the_child_loads_at_low_priority_then_runs_at_idle_priority(model: LoadedModel) -> None:
    proc = TeacherProcess()
    try:
        assert proc.pid is not None
        assert proc.versions() == []  # answered: the child is up, nothing loaded yet
        assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER  # type: ignore[attr-defined]
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) >= min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)
        assert proc.run(_query(model, [0]), ort.RunOptions()).indices.size == 4
        assert os.sched_getscheduler(proc.pid) == os.SCHED_IDLE  # type: ignore[attr-defined]
    finally:
        proc.close()


def test_a_terminated_run_times_out_and_its_late_answer_is_discarded(
    model: LoadedModel, child: TeacherProcess
) -> None:
    stale = ort.RunOptions()
    stale.terminate = True  # what the shadow's watchdog sets at the deadline
    with pytest.raises(TimeoutError, match="past its timeout"):
        child.run(_query(model, [1, 4], 3), stale)
    query = _query(model, [0], 0)
    (expected,) = recommend_batch([replace(query, side="teacher")])
    assert child.run(query, ort.RunOptions()).indices.tolist() == expected.indices.tolist()


def test_a_version_the_child_cannot_load_is_an_error_naming_it(
    model: LoadedModel, child: TeacherProcess, tmp_path: Path
) -> None:
    missing = replace(model, path=tmp_path / "gone")
    with pytest.raises(TeacherProcessError, match="gone"):
        child.run(_query(missing, [0]), ort.RunOptions())
    assert child.run(_query(model, [0]), ort.RunOptions()).indices.size == 4  # still serving


def test_a_dead_child_is_reported_not_waited_for(model: LoadedModel) -> None:
    proc = TeacherProcess()
    try:
        proc.versions()
        proc._proc.kill()
        proc._proc.wait(10)
        with pytest.raises(TeacherProcessError, match="exited"):
            proc.run(_query(model, [0]), ort.RunOptions())
    finally:
        proc.close()


def test_a_child_over_its_cpu_budget_sheds_jobs_at_once(model: LoadedModel) -> None:
    proc = TeacherProcess(cpu_budget=1e-9, burst_cpu_s=1e-9)  # one run empties the bucket for good
    try:
        assert proc.run(_query(model, [0]), ort.RunOptions()).indices.size == 4
        with pytest.raises(TeacherShed, match="CPU budget"):
            proc.run(_query(model, [0]), ort.RunOptions())
    finally:
        proc.close()


def test_a_deadline_bounds_the_wait(model: LoadedModel, child: TeacherProcess) -> None:
    with pytest.raises(TimeoutError, match="past its timeout"):
        child.run(_query(model, [0]), ort.RunOptions(), deadline=time.monotonic() - 1.0)
    assert child.run(_query(model, [1]), ort.RunOptions(), deadline=time.monotonic() + 60).indices.size == 4


def test_the_child_skips_only_the_hash_pass(tmp_path: Path) -> None:
    """The teacher process loads a folder the server has just verified; every other check remains."""
    version = build_tiny_version(tmp_path / "models", "v1")
    popularity = np.load(version / "popularity.npy")
    np.save(version / "popularity.npy", popularity[::-1].copy())  # valid array, wrong sha256
    with pytest.raises(ManifestError, match="popularity.npy"):
        load_version(version)
    assert load_version(version, verify_hashes=False).version == "v1"
    np.save(version / "popularity.npy", popularity[:-1])  # wrong shape: refused even so
    with pytest.raises(ManifestError, match="shape"):
        load_version(version, verify_hashes=False)
