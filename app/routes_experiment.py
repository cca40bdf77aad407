"""Compare, feedback, A/B and shadow reports: the routes of issue 4 and the services behind them.

`install_experiment(app)` (called by create_app) adds the router and plugs into the core's extension
points: `choose_arm` (sticky assignment) and an `after_recommend` hook that logs every served answer
and hands sampled student answers to the shadow teacher. `ExperimentServices` holds the stores and
the shadow worker; the lifespan opens it and closes it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from app.ab_stats import build_ab_report
from app.comparisons import ComparisonRows
from app.config import Settings
from app.deps import ModelDep, SettingsDep, history_ids, invalid, limit_errors, prepare_request
from app.experiment import FORCE_ARM_HEADER, SESSION_HEADER, Arm, Assignment, AssignmentError, Experiment
from app.feedback import FeedbackError, Served
from app.model_store import LoadedModel, ModelStore
from app.recommender import Result, item_list
from app.redis_state import open_state_stores
from app.schemas import Id, RecommendRequest
from app.shadow import ShadowJob, ShadowMetrics, ShadowRunner
from app.shadow_report import build_report, render_html
from core.agreement import agreement

router = APIRouter(tags=["experiment"])
SinceQuery = Annotated[
    datetime | None, Query(description="Only data from this time on (ISO 8601 or epoch seconds)")
]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: Id
    item_id: Id
    event: Literal["click", "purchase"]


class ExperimentServices:
    """The experiment's state for one app run: stores in the state db and the shadow worker."""

    def __init__(self, settings: Settings, metrics: ShadowMetrics | None = None):
        self.experiment = Experiment(
            settings.experiment_name, settings.experiment_salt, settings.experiment_teacher_share
        )
        # SQLite state db, or Redis shared by replicas (RECDISTILL_HISTORY_BACKEND=redis; app/redis_state.py)
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

    def close(self) -> None:
        self.shadow.stop()
        self.feedback.close()
        self.comparisons.close()


def _assign(
    services: ExperimentServices, user_id: str | None, headers: Mapping[str, str] | None
) -> Assignment:
    headers = headers or {}
    try:
        return services.experiment.assign(user_id, headers.get(SESSION_HEADER), headers.get(FORCE_ARM_HEADER))
    except AssignmentError as exc:
        raise invalid(("header", FORCE_ARM_HEADER), str(exc), value=headers.get(FORCE_ARM_HEADER)) from exc


def install_experiment(app: FastAPI) -> None:
    """Add the routes and the hooks; `app.state.experiment` is set by the lifespan."""
    app.include_router(router)
    app.state.shadow_metrics = ShadowMetrics(app.state.metrics.registry)

    async def choose_arm(user_id: str | None, headers: Mapping[str, str] | None = None) -> Arm:
        return _assign(app.state.experiment, user_id, headers).arm

    async def after_recommend(ctx: Any) -> None:  # ctx: app.main.RecommendContext
        services: ExperimentServices = app.state.experiment
        assignment = _assign(services, ctx.request.user_id, ctx.headers)
        response = ctx.response
        items = tuple(item["item_id"] for item in response["items"])
        services.feedback.log_served(
            Served(
                response["request_id"],
                services.experiment.name,
                ctx.arm,
                assignment.unit,
                response["model_version"],
                items,
                forced=assignment.forced,
            )
        )
        # `active` first: with the shadow off no job is built (the request path's cheapest exit).
        if services.shadow.active and ctx.arm == "student" and response["fallback"] is None and items:
            services.shadow.submit(
                ShadowJob(
                    response["request_id"],
                    ctx.prepared.query,
                    items,
                    student_latency_ms=ctx.inference_ms,
                )
            )

    app.state.choose_arm = choose_arm
    app.state.after_recommend.append(after_recommend)


def open_experiment(app: FastAPI, store: ModelStore | None = None) -> ExperimentServices:
    """For the lifespan: open the stores, start the shadow worker, and have each newly loaded model
    version get its shadow teacher sessions at load time (not on the first shadowed request)."""
    services = ExperimentServices(app.state.settings, getattr(app.state, "shadow_metrics", None))
    if store is not None:
        store.listeners.append(services.shadow.prepare)
    app.state.experiment = services
    return services


def _services(request: Request) -> ExperimentServices:
    return request.app.state.experiment


def _since(since: datetime | None) -> float | None:
    return None if since is None else since.timestamp()


async def _run_side(
    request: Request, model: LoadedModel, body: RecommendRequest, side: str
) -> tuple[Result, float]:
    prepared = prepare_request(model, body, await history_ids(request, body), side, ("body",))
    start = time.perf_counter()
    result = await request.app.state.batcher.submit(prepared.query)
    return result, (time.perf_counter() - start) * 1000.0


def rank_changes(student: list[str], teacher: list[str]) -> list[dict[str, Any]]:
    """Every item of either list whose 1-based rank differs (None: not in that list), student order first."""
    s_rank = {item: r for r, item in enumerate(student, 1)}
    t_rank = {item: r for r, item in enumerate(teacher, 1)}
    union = list(dict.fromkeys([*student, *teacher]))
    return [
        {"item_id": item, "student_rank": s_rank.get(item), "teacher_rank": t_rank.get(item)}
        for item in union
        if s_rank.get(item) != t_rank.get(item)
    ]


@router.post("/v1/compare")
async def compare(
    request: Request, body: RecommendRequest, model: ModelDep, settings: SettingsDep
) -> dict[str, Any]:
    """Student and teacher answers to the same request, side by side, with their agreement."""
    if errors := limit_errors(body, settings, ("body",)):
        raise RequestValidationError(errors)
    student, student_ms = await _run_side(
        request, model, body, "student"
    )  # one after the other: fair timings
    teacher, teacher_ms = await _run_side(request, model, body, "teacher")
    s_items, t_items = item_list(model, student), item_list(model, teacher)
    s_ids = [str(i["item_id"]) for i in s_items]
    t_ids = [str(i["item_id"]) for i in t_items]
    return {
        "request_id": uuid.uuid4().hex,
        "k": body.k,
        "student": {
            "items": s_items,
            "latency_ms": student_ms,
            "model_version": model.version,
            "fallback": student.fallback,
        },
        "teacher": {
            "items": t_items,
            "latency_ms": teacher_ms,
            "model_version": model.version,
            "fallback": teacher.fallback,
        },
        "agreement": agreement(s_ids, t_ids, body.k),
        "rank_changes": rank_changes(s_ids, t_ids),
    }


@router.post("/v1/feedback", status_code=201)
async def feedback(request: Request, body: FeedbackIn) -> dict[str, Any]:
    """A click or purchase on an item of a served answer; 201 once it is on disk."""
    try:
        result = await run_in_threadpool(
            _services(request).feedback.add_feedback, body.request_id, body.item_id, body.event
        )
    except FeedbackError as exc:
        raise invalid(("body", exc.field), str(exc), value=getattr(body, exc.field, None)) from exc
    return {"accepted": not result.duplicate, "duplicate": result.duplicate, "arm": result.arm}


@router.get("/v1/ab/report")
async def ab_report(request: Request, since: SinceQuery = None) -> dict[str, Any]:
    """Per arm: users, requests, impressions, clicks, purchases, CTR and conversion; the test and SRM."""
    services = _services(request)
    exp = services.experiment
    counts = await run_in_threadpool(services.feedback.arm_counts, exp.name, _since(since))
    report = build_ab_report(counts, exp.shares)
    return {
        "experiment": {"name": exp.name, "teacher_share": exp.teacher_share, "since": since},
        **report,
    }


def _shadow_rows(services: ExperimentServices, since: float | None) -> ComparisonRows:
    services.shadow.flush()  # persist what the worker still buffers so the report counts it
    return services.comparisons.load(since)


@router.get("/v1/shadow/report")
async def shadow_report(request: Request, since: SinceQuery = None) -> dict[str, Any]:
    """Agreement and latency of the shadow teacher vs the student, overall and per model version."""
    services = _services(request)
    rows = await run_in_threadpool(_shadow_rows, services, _since(since))
    return {"shadow_rate": services.shadow.rate, **build_report(rows, _since(since))}


@router.get("/v1/shadow/report.html", response_class=HTMLResponse)
async def shadow_report_html(request: Request, since: SinceQuery = None) -> HTMLResponse:
    """The shadow report as a page with inline SVG plots."""
    services = _services(request)
    rows = await run_in_threadpool(_shadow_rows, services, _since(since))
    page = await asyncio.to_thread(render_html, build_report(rows, _since(since)), rows)
    return HTMLResponse(page)
