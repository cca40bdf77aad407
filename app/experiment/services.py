"""The experiment's services for one app run: assignment, the served-answer log, the shadow teacher.

`open_experiment` (the lifespan calls it) opens the stores, starts the shadow worker, and plugs the
after-answer hook into the request path: every served answer is logged under the arm it was resolved
with, and sampled student answers go to the shadow teacher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import Settings
from app.engine.model_store import ModelStore
from app.experiment.assignment import Experiment
from app.experiment.shadow import ShadowJob, ShadowMetrics, ShadowRunner
from app.stores.factory import open_state_stores
from app.stores.records import Served

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.api.request import Answer


class ExperimentServices:
    """The experiment's state for one app run: stores in the state db (or Redis) and the shadow worker."""

    def __init__(self, settings: Settings, metrics: ShadowMetrics | None = None):
        self.experiment = Experiment(
            settings.experiment_name, settings.experiment_salt, settings.experiment_teacher_share
        )
        self.feedback, self.comparisons = open_state_stores(settings)
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

    async def after_answer(self, done: Answer) -> None:
        """Log the answer under its resolved arm; hand a sampled student answer to the shadow teacher."""
        resolved, response = done.resolved, done.response
        items = tuple(item["item_id"] for item in response["items"])
        assignment = resolved.assignment
        self.feedback.log_served(
            Served(
                response["request_id"],
                self.experiment.name,
                assignment.arm,
                assignment.unit,
                response["model_version"],
                items,
                forced=assignment.forced,
            )
        )
        # `active` first: with the shadow off no job is built (the request path's cheapest exit).
        if self.shadow.active and assignment.arm == "student" and response["fallback"] is None and items:
            self.shadow.submit(
                ShadowJob(response["request_id"], resolved.query, items, student_latency_ms=done.inference_ms)
            )

    def close(self) -> None:
        self.shadow.stop()
        self.feedback.close()
        self.comparisons.close()


def open_experiment(app: FastAPI, store: ModelStore | None = None) -> ExperimentServices:
    """For the lifespan: open the services, hook them into the request path, and have each newly loaded
    model version get its shadow teacher sessions at load time (not on the first shadowed request)."""
    services = ExperimentServices(app.state.settings, getattr(app.state, "shadow_metrics", None))
    if store is not None:
        store.listeners.append(services.shadow.prepare)
    app.state.experiment = services
    app.state.after_answer.append(services.after_answer)
    return services
