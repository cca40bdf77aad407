"""The experiment's services for one app run: the running experiment, the served-answer log, the shadow.

`open_experiment` (the lifespan calls it) opens the stores, starts the shadow worker, and plugs the
after-answer hook into the request path: every served answer is logged under the running
experiment's name and the arm it was resolved with, and sampled serving-student answers go to the
shadow (the teacher, or the candidate's student when a candidate is loaded).

Experiments are named and kept in the shared state (`ExperimentStore`): at most one runs at a time.
At start-up the one running in the store is used; when none runs, the settings' experiment
(RECDISTILL_EXPERIMENT_NAME, _SALT, _TEACHER_SHARE) is created, or continued when it is stored and
not stopped (a restart never loses an experiment). With no experiment running, every unit gets the
control arm and answers are logged under the name "" (counted for shadow coverage, in no report).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from app.config import Settings
from app.engine.candidate import CandidateSlot
from app.engine.model_store import ModelStore
from app.experiment.assignment import ARM_PAIRS, SERVING_ARMS, ArmsKind, Experiment
from app.experiment.shadow import ShadowJob, ShadowMetrics, ShadowRunner
from app.stores.factory import open_state_stores
from app.stores.outage import storage_errors
from app.stores.records import ExperimentExists, ExperimentRecord, Served

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.api.request import Answer, ResolvedRequest

log = logging.getLogger(__name__)
NO_EXPERIMENT = ""  # the experiment name answers are logged under while none runs


class ExperimentConflict(RuntimeError):
    """An experiment change that conflicts with the stored state (one already running, none to stop,
    a name taken, no candidate for version arms); the message says which."""


class ExperimentServices:
    """The experiment's state for one app run: stores in the state db (or Redis) and the shadow worker."""

    def __init__(self, settings: Settings, metrics: ShadowMetrics | None = None):
        self.settings = settings
        self.feedback, self.comparisons, self.experiments = open_state_stores(settings)
        self.candidate: CandidateSlot | None = None  # set by open_experiment
        self.store: ModelStore | None = None
        self._lock = threading.Lock()  # experiment changes, one at a time
        self.record: ExperimentRecord | None = None
        self.experiment = Experiment(NO_EXPERIMENT, settings.experiment_salt, 0.0)
        self.shadow = ShadowRunner(
            self.comparisons,
            rate=settings.shadow_rate,
            queue_size=settings.shadow_queue_size,
            timeout_ms=settings.shadow_timeout_ms,
            threads=settings.shadow_threads,
            metrics=metrics,
            isolation=settings.shadow_isolation,
            cpu_budget=settings.shadow_cpu_budget,
        )
        self.shadow.start()

    # -- the running experiment ---------------------------------------------------------------------
    def _activate(self, record: ExperimentRecord | None) -> None:
        """Make `record` the experiment the request path assigns with (one reference swap)."""
        self.record = record
        if record is None:
            self.experiment = Experiment(NO_EXPERIMENT, self.settings.experiment_salt, 0.0)
        else:
            self.experiment = Experiment(
                record.name,
                record.salt,
                record.treatment_share,
                record.arms,  # type: ignore[arg-type]
            )

    def _serving_version(self) -> str | None:
        model = self.store.current if self.store is not None else None
        return None if model is None else model.version

    def start_default(self) -> None:
        """At start-up: the experiment running in the store, else the settings' (created or continued)."""
        s = self.settings
        running = [r for r in self.experiments.list() if r.running]
        if running:
            record = running[-1]
            wanted = (s.experiment_teacher_share, s.experiment_salt)
            ours = record.source == "settings" and record.name == s.experiment_name
            if ours and (record.treatment_share, record.salt) != wanted:
                record = replace(record, treatment_share=wanted[0], salt=wanted[1])
                self.experiments.update(record)  # the environment is what the settings' one follows
            self._activate(record)
            return
        if self.experiments.get(s.experiment_name) is not None:  # stored and stopped: nothing runs
            self._activate(None)
            return
        version = self._serving_version()
        record = ExperimentRecord(
            s.experiment_name, "teacher_vs_student", s.experiment_teacher_share, s.experiment_salt,
            started_at=time.time(), control_version=version, treatment_version=version, source="settings",
        )  # fmt: skip
        try:
            self.experiments.create(record)
        except ExperimentExists:  # another replica created it meanwhile
            record = self.experiments.get(s.experiment_name) or record
        self._activate(record if record.running else None)

    def refresh(self) -> None:
        """Follow the shared state (another replica started or stopped an experiment)."""
        running = [r for r in self.experiments.list() if r.running]
        current = running[-1] if running else None
        if current != self.record:
            self._activate(current)

    def start(
        self, name: str, arms: ArmsKind, share: float, planned_lift: float | None = None
    ) -> ExperimentRecord:
        """Start a named experiment (the settings' one, if it runs, is stopped); ExperimentConflict
        when another started one runs, the name is taken, or version arms have no candidate loaded.
        `planned_lift` tunes its always-valid test (None: the default, sequential.PLANNED_LIFT)."""
        if arms not in ARM_PAIRS:
            raise ValueError(f"arms must be one of {sorted(ARM_PAIRS)}")
        with self._lock:
            running = [r for r in self.experiments.list() if r.running]
            started = [r for r in running if r.source != "settings"]
            if started:
                raise ExperimentConflict(f"experiment {started[-1].name!r} is running: stop it first")
            serving = self._serving_version()
            treatment = serving
            if arms == "serving_vs_candidate":
                candidate = self.candidate.current if self.candidate is not None else None
                if candidate is None:
                    raise ExperimentConflict(
                        "arms serving_vs_candidate need a candidate: POST /admin/candidate first"
                    )
                treatment = candidate.version
            record = ExperimentRecord(
                name, arms, share, self.settings.experiment_salt, started_at=time.time(),
                control_version=serving, treatment_version=treatment, planned_lift=planned_lift,
            )  # fmt: skip
            try:
                self.experiments.create(record)
            except ExperimentExists as exc:
                raise ExperimentConflict(f"{exc}: names are not reused; reset it or pick another") from exc
            for default in running:  # the settings' experiment gives way to a named one
                self.experiments.update(replace(default, stopped_at=record.started_at))
            self._activate(record)
            return record

    def get(self, name: str | None) -> ExperimentRecord | None:
        """The named experiment, or the running one when `name` is None."""
        if name is None:
            return self.record
        return self.experiments.get(name)

    def stop(self, name: str) -> ExperimentRecord | None:
        """Stop a running experiment (None: unknown name); a stopped one is returned unchanged."""
        with self._lock:
            record = self.experiments.get(name)
            if record is None or not record.running:
                return record
            record = replace(record, stopped_at=time.time())
            self.experiments.update(record)
            if self.record is not None and self.record.name == name:
                self._activate(None)
            return record

    def reset(self, name: str) -> tuple[ExperimentRecord, int] | None:
        """Delete the experiment's answers and feedback and stamp reset_at; (record, answers deleted)."""
        with self._lock:
            record = self.experiments.get(name)
            if record is None:
                return None
            deleted = self.feedback.delete_experiment(name)
            record = replace(record, reset_at=time.time())
            self.experiments.update(record)
            if self.record is not None and self.record.name == name:
                self._activate(record)
            return record, deleted

    def candidate_in_use(self) -> str | None:
        """The running experiment that serves the candidate, if any (the candidate cannot go then)."""
        record = self.record
        return record.name if record is not None and record.arms == "serving_vs_candidate" else None

    # -- the request path ---------------------------------------------------------------------------
    async def after_answer(self, done: Answer) -> None:
        """Log the answer under its resolved arm; hand a sampled serving answer to the shadow."""
        resolved, response = done.resolved, done.response
        items = tuple(item["item_id"] for item in response["items"])
        assignment = resolved.assignment
        self.feedback.log_served(
            Served(
                response["request_id"],
                resolved.experiment,
                assignment.arm,
                assignment.unit,
                response["model_version"],
                items,
                forced=assignment.forced,
                latency_ms=done.inference_ms,
                fallback=response["fallback"],
            )
        )
        # `active` first: with the shadow off no job is built (the request path's cheapest exit).
        if self.shadow.active and assignment.arm in SERVING_ARMS and response["fallback"] is None and items:
            candidate = self.candidate.current if self.candidate is not None else None
            self.shadow.submit(
                ShadowJob(
                    response["request_id"],
                    resolved.query,
                    items,
                    student_latency_ms=done.inference_ms,
                    candidate=candidate,
                    replay=None if candidate is None else resolved.student_query_for,
                )
            )

    def after_failure(self, resolved: ResolvedRequest) -> None:
        """Log an answer that failed after its arm was assigned (no items): the A/B error rate."""
        assignment = resolved.assignment
        self.feedback.log_served(
            Served(
                uuid.uuid4().hex,
                resolved.experiment,
                assignment.arm,
                assignment.unit,
                resolved.model.version,
                (),
                forced=assignment.forced,
                error=True,
            )
        )

    def close(self) -> None:
        self.shadow.stop()
        self.feedback.close()
        self.comparisons.close()
        self.experiments.close()


def open_experiment(
    app: FastAPI, store: ModelStore | None = None, candidate: CandidateSlot | None = None
) -> ExperimentServices:
    """For the lifespan: open the services, hook them into the request path, and have each newly loaded
    model version get its shadow teacher sessions at load time (not on the first shadowed request)."""
    services = ExperimentServices(app.state.settings, getattr(app.state, "shadow_metrics", None))
    services.store, services.candidate = store, candidate
    if store is not None:
        store.listeners.append(services.shadow.prepare)
    app.state.experiment = services
    app.state.after_answer.append(services.after_answer)
    app.state.after_failure.append(services.after_failure)
    return services


async def follow_experiments(services: ExperimentServices, interval_s: float) -> None:
    """Re-read the running experiment every `interval_s` (off the loop), so a start or stop through
    any replica reaches this one; errors are logged and the current experiment stays."""
    loop = asyncio.get_running_loop()
    storage = storage_errors()
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, services.refresh)
            failing = False
        except asyncio.CancelledError:
            raise
        except storage as exc:  # the store is down: one line per outage, not a traceback per poll
            if not failing:
                log.error(
                    "experiment follower: cannot read the shared state (%s); keeping the current one", exc
                )
            failing = True
        except Exception:
            log.exception("experiment follower: cannot read the shared state; keeping the current one")
