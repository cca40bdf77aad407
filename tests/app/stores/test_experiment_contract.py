"""The experiment store's contract (app.stores.protocols.ExperimentStore), on SQLite and on a real
redis-server, and the rules the experiment services build on it, on each backend: one experiment runs
at a time across replicas, stop and reset, names never reused, and each experiment's served answers
and feedback kept apart from every other's.

Two stores (or two services) opened on the same backend stand for two replicas sharing its state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.experiment.services import ExperimentConflict, ExperimentServices
from app.stores.protocols import ExperimentStore
from app.stores.records import ExperimentExists, ExperimentRecord, Served


def open_experiments(backend: tuple[str, Any]) -> ExperimentStore:
    kind, where = backend
    if kind == "sqlite":
        from app.stores.experiments_sqlite import SqliteExperimentStore

        return SqliteExperimentStore(where / "state.sqlite3")
    from app.stores.experiments_redis import RedisExperimentStore

    return RedisExperimentStore(where)


def record(name: str, started_at: float, **kw: Any) -> ExperimentRecord:
    return ExperimentRecord(name, kw.pop("arms", "teacher_vs_student"), 0.5, "salt", started_at, **kw)


@pytest.fixture
def stores(backend: tuple[str, Any]) -> Iterator[tuple[ExperimentStore, ExperimentStore]]:
    """Two replicas' stores on one backend."""
    a, b = open_experiments(backend), open_experiments(backend)
    yield a, b
    a.close()
    b.close()


class TestExperimentStoreContract:
    def test_create_get_and_list_oldest_start_first(
        self, stores: tuple[ExperimentStore, ExperimentStore]
    ) -> None:
        a, b = stores
        assert a.list() == [] and a.get("nope") is None
        late = record("late", 30.0, arms="serving_vs_candidate", control_version="v1", treatment_version="v2")
        a.create(late)
        a.create(record("early", 10.0, stopped_at=20.0, source="settings"))
        b.create(record("also-early", 10.0))
        assert b.get("late") == late  # every field round-trips, through the other replica
        assert [r.name for r in a.list()] == ["also-early", "early", "late"]  # started_at, then name
        assert [r.running for r in b.list()] == [True, False, True]

    def test_a_name_is_never_reused_even_once_stopped(
        self, stores: tuple[ExperimentStore, ExperimentStore]
    ) -> None:
        a, b = stores
        first = record("exp", 10.0, stopped_at=11.0)
        a.create(first)
        with pytest.raises(ExperimentExists, match="exp"):
            b.create(record("exp", 50.0))
        assert a.get("exp") == first and len(a.list()) == 1  # the stored one is untouched

    def test_a_racing_create_has_exactly_one_winner(
        self, backend: tuple[str, Any], stores: tuple[ExperimentStore, ExperimentStore]
    ) -> None:
        replicas = [open_experiments(backend) for _ in range(6)]
        outcomes: list[str] = []
        barrier = threading.Barrier(len(replicas))

        def race(i: int) -> None:
            barrier.wait()
            try:
                replicas[i].create(record("race", float(i)))
                outcomes.append(f"won {i}")
            except ExperimentExists:
                outcomes.append("lost")

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(replicas))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for store in replicas:
            store.close()
        [won] = [o for o in outcomes if o.startswith("won")]
        assert outcomes.count("lost") == len(replicas) - 1
        stored = stores[0].get("race")
        assert stored is not None and won == f"won {int(stored.started_at)}"  # the winner's record

    def test_update_replaces_the_record_stop_and_reset(
        self, stores: tuple[ExperimentStore, ExperimentStore]
    ) -> None:
        a, b = stores
        a.create(record("exp", 10.0))
        a.create(record("other", 5.0))
        b.update(replace(record("exp", 10.0), stopped_at=20.0))
        assert a.get("exp") == record("exp", 10.0, stopped_at=20.0)
        a.update(replace(record("exp", 10.0), stopped_at=20.0, reset_at=25.0))
        assert b.get("exp") == record("exp", 10.0, stopped_at=20.0, reset_at=25.0)
        assert b.get("other") == record("other", 5.0)  # the other row is untouched
        assert [r.name for r in b.list()] == ["other", "exp"]

    def test_experiments_survive_reopening(self, backend: tuple[str, Any]) -> None:
        store = open_experiments(backend)
        store.create(record("exp", 10.0, stopped_at=12.0))
        store.close()
        again = open_experiments(backend)
        try:
            assert again.list() == [record("exp", 10.0, stopped_at=12.0)]
        finally:
            again.close()


# -- the services' rules over the store, on each backend ---------------------------------------------


def open_services(backend: tuple[str, Any], tmp_path: Path, replica: str) -> ExperimentServices:
    """A replica's experiment services (no model store: the serving version is None)."""
    kind, where = backend
    shared: dict[str, Any] = (
        {"state_db": where / "state.sqlite3"}
        if kind == "sqlite"
        else {"history_backend": "redis", "redis_url": where}
    )
    settings = Settings(
        models_dir=tmp_path / "models",
        history_db=tmp_path / replica / "history.sqlite3",
        shadow_isolation="thread",
        **shared,
    )
    services = ExperimentServices(settings)
    services.start_default()
    return services


@pytest.fixture
def replicas(backend: tuple[str, Any], tmp_path: Path) -> Iterator[tuple[ExperimentServices, ...]]:
    a, b = open_services(backend, tmp_path, "a"), open_services(backend, tmp_path, "b")
    yield a, b
    a.close()
    b.close()


def serve(services: ExperimentServices, experiment: str, users: list[str]) -> None:
    for user in users:
        served = Served(f"{experiment}-{user}", experiment, "student", f"user:{user}", "v1", ("i1", "i2"))
        services.feedback.log_served(served)
    services.feedback.flush()


def users_of(services: ExperimentServices, experiment: str) -> int:
    return sum(arm["users"] for arm in services.feedback.arm_counts(experiment).values())


class TestExperimentRulesOnEachBackend:
    def test_one_experiment_runs_at_a_time_across_replicas(
        self, replicas: tuple[ExperimentServices, ExperimentServices]
    ) -> None:
        a, b = replicas
        default = a.settings.experiment_name
        assert a.record is not None and b.record is not None and a.record.name == b.record.name == default
        a.start("exp-a", "teacher_vs_student", 0.5)
        assert [r.name for r in b.experiments.list() if r.running] == ["exp-a"]  # the default gave way
        with pytest.raises(ExperimentConflict, match="exp-a"):
            b.start("exp-b", "teacher_vs_student", 0.5)  # the other replica sees it running
        b.refresh()
        assert b.record is not None and b.record.name == "exp-a"
        a.stop("exp-a")
        with pytest.raises(ExperimentConflict, match="candidate"):
            a.start("exp-c", "serving_vs_candidate", 0.5)  # no candidate loaded
        assert b.get("exp-c") is None  # a refused start stores nothing

    def test_stop_keeps_the_record_and_names_are_never_reused(
        self, replicas: tuple[ExperimentServices, ExperimentServices]
    ) -> None:
        a, b = replicas
        started = a.start("exp-a", "teacher_vs_student", 0.25)
        stopped = b.stop("exp-a")
        assert stopped is not None and not stopped.running and stopped.stopped_at is not None
        assert replace(stopped, stopped_at=None) == started  # only the stop time changed
        assert b.stop("exp-a") == stopped  # stopping twice changes nothing
        assert b.stop("nope") is None
        a.refresh()
        assert a.record is None  # nothing runs now, on either replica
        with pytest.raises(ExperimentConflict, match="not reused"):
            a.start("exp-a", "teacher_vs_student", 0.5)
        result = b.reset("exp-a")
        assert result is not None and result[0] == replace(stopped, reset_at=result[0].reset_at)
        with pytest.raises(ExperimentConflict, match="not reused"):
            b.start("exp-a", "teacher_vs_student", 0.5)  # not after a reset either
        assert a.get("exp-a") == result[0]

    def test_each_experiment_has_its_own_rows_and_a_reset_deletes_only_its_own(
        self, replicas: tuple[ExperimentServices, ExperimentServices]
    ) -> None:
        a, b = replicas
        a.start("exp-a", "teacher_vs_student", 0.5)
        serve(a, "exp-a", ["u1", "u2", "u3"])
        a.stop("exp-a")
        b.start("exp-b", "teacher_vs_student", 0.5)
        serve(b, "exp-b", ["u1", "u9"])  # u1 again: counted in exp-b only
        assert (users_of(a, "exp-a"), users_of(a, "exp-b"), users_of(b, "exp-a")) == (3, 2, 3)
        result = a.reset("exp-a")
        assert result is not None
        reset, deleted = result
        assert deleted == 3 and reset.reset_at is not None and not reset.running
        assert (users_of(b, "exp-a"), users_of(b, "exp-b")) == (0, 2)  # exp-b kept every row
        assert b.feedback.lookup("exp-a-u1") is None and b.feedback.lookup("exp-b-u1") is not None
        assert a.reset("nope") is None
