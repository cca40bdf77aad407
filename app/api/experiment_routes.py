"""The experiment's routes: compare, feedback, and the A/B and shadow reports.

The services behind them (assignment, the served-answer log, the shadow teacher) are
`app.experiment.services.ExperimentServices`, opened by the lifespan onto `app.state.experiment`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from app.api.ab_schemas import ABReport
from app.api.deps import ModelDep, WritableDep
from app.api.errors import invalid
from app.api.openapi import errors
from app.api.request import resolve, run
from app.api.rollout_routes import experiment_out
from app.api.rollout_schemas import ShadowReport
from app.api.schemas import Id, RecommendRequest
from app.api.types import DateTime, EpochSecondsQuery, epoch_seconds
from app.engine.recommender import item_list
from app.experiment.ab_report import build_ab_report, pre_period_window
from app.experiment.ab_timeseries import ab_timeseries
from app.experiment.assignment import Experiment
from app.experiment.sequential import PLANNED_LIFT
from app.experiment.services import ExperimentServices
from app.experiment.shadow_report import build_report, pair_info, render_html
from app.experiment.timeseries import shadow_timeseries
from app.stores.records import (
    CANDIDATE_PAIR,
    TEACHER_PAIR,
    AnswerRows,
    ComparisonRows,
    ExperimentRecord,
    FeedbackError,
    UnitSums,
    unit_totals,
)
from core.agreement import agreement

router = APIRouter(tags=["experiment"])
SinceQuery = Annotated[
    DateTime | EpochSecondsQuery | None,
    Query(description="Only data from this time on: an RFC 3339 date-time or epoch seconds"),
]


BucketQuery = Annotated[
    int,
    Query(
        ge=1, le=86_400, description="Width of a time bucket in seconds (buckets start at multiples of it)"
    ),
]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: Id
    item_id: Id
    event: Literal["click", "purchase"]


def _services(request: Request) -> ExperimentServices:
    return request.app.state.experiment


def _since(since: datetime | float | None) -> float | None:
    return None if since is None else epoch_seconds(since)


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


@router.post("/v1/compare", responses=errors(400, 404, 413, 503))
async def compare(request: Request, body: RecommendRequest, model: ModelDep) -> dict[str, Any]:
    """Student and teacher answers to the same request, side by side, with their agreement."""
    resolved = await resolve(request, body, model, ("body",), side="student")
    # one after the other: fair timings
    student, student_ms = await run(request, resolved.query_for("student"))
    s_items = item_list(model, student, body.fields, resolved.view)
    s_ids = [str(i["item_id"]) for i in s_items]
    student_block = {
        "items": s_items,
        "latency_ms": student_ms,
        "model_version": model.version,
        "fallback": resolved.fallback(student),
    }
    if not model.teacher.can_score(resolved.query.user):  # a lookup teacher without this user's vector
        return {
            "request_id": uuid.uuid4().hex,
            "k": body.k,
            "student": student_block,
            "teacher": {"available": False, "reason": "unknown user", "model_version": model.version},
            "agreement": None,
            "rank_changes": [],
        }
    teacher, teacher_ms = await run(request, resolved.query_for("teacher"))
    t_items = item_list(model, teacher, body.fields, resolved.view)
    t_ids = [str(i["item_id"]) for i in t_items]
    return {
        "request_id": uuid.uuid4().hex,
        "k": body.k,
        "student": student_block,
        "teacher": {
            "available": True,
            "items": t_items,
            "latency_ms": teacher_ms,
            "model_version": model.version,
            "fallback": resolved.fallback(teacher),
        },
        "agreement": agreement(s_ids, t_ids, body.k),
        "rank_changes": rank_changes(s_ids, t_ids),
    }


@router.post(
    "/v1/feedback", status_code=201, dependencies=[WritableDep], responses=errors(400, 404, 409, 413, 503)
)
async def feedback(request: Request, body: FeedbackIn) -> dict[str, Any]:
    """A click or purchase on an item of a served answer; 201 once it is on disk."""
    try:
        result = await run_in_threadpool(
            _services(request).feedback.add_feedback, body.request_id, body.item_id, body.event
        )
    except FeedbackError as exc:
        # A schema-valid body that names no served answer (404), or an item that answer did not hold (409).
        if exc.field == "request_id":
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        if exc.field == "item_id":
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        raise invalid(("body", exc.field), str(exc), value=getattr(body, exc.field, None)) from exc
    return {"accepted": not result.duplicate, "duplicate": result.duplicate, "arm": result.arm}


ExperimentQuery = Annotated[
    str | None, Query(description="The experiment to report (GET /v1/experiments); default: the running one")
]


def _experiment(services: ExperimentServices, name: str | None) -> tuple[ExperimentRecord, Experiment]:
    """The named experiment (default: the running one) and its arms; 404 when there is none."""
    record = services.get(name)
    if record is None:
        what = f"no experiment named {name!r}" if name else "no experiment is running"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what}; GET /v1/experiments lists them")
    return record, Experiment(record.name, record.salt, record.treatment_share, record.arms)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _ABData:
    """What the A/B report and its time series read for one experiment, once."""

    rows: AnswerRows  # the experiment's answers in the window
    pre: UnitSums  # each user's answers before the experiment started (CUPED)
    served: int  # answers served by any version and arm since the window's start
    now: float


def _read_ab(services: ExperimentServices, record: ExperimentRecord, start: float | None) -> _ABData:
    store, until = services.feedback, record.stopped_at
    return _ABData(
        store.answer_rows(record.name, start, until),
        unit_totals(store.answer_rows(None, *pre_period_window(record.started_at))),
        sum(store.served_counts(start if start is not None else record.started_at, until).values()),
        time.time(),
    )


def _planned_lift(record: ExperimentRecord) -> float:
    return PLANNED_LIFT if record.planned_lift is None else record.planned_lift


LiftQuery = Annotated[
    float | None,
    Query(
        gt=0.0,
        le=10.0,
        description="The relative CTR change users_needed and expected_conclusion are quoted for "
        "(0.05: 5%); default: the experiment's planned lift. The test itself stays tuned to the plan",
    ),
]


@router.get("/v1/ab/report", response_model=ABReport, responses=errors(404))
async def ab_report(
    request: Request, since: SinceQuery = None, experiment: ExperimentQuery = None, lift: LiftQuery = None
) -> dict[str, Any]:
    """The randomised arms' counts; per metric the always-valid comparison (CUPED), its fixed-horizon
    reading, the guardrails, SRM and the verdict in words; anonymous traffic apart."""
    services = _services(request)
    record, exp = _experiment(services, experiment)
    start = _since(since)
    data = await run_in_threadpool(_read_ab, services, record, start)
    counted_from = max(start if start is not None else -math.inf, record.reset_at or record.started_at)
    elapsed = (record.stopped_at or data.now) - counted_from
    report = build_ab_report(
        data.rows, exp.shares, exp.control, exp.treatment, pre=data.pre, planned_lift=_planned_lift(record),
        target_lift=lift, elapsed_s=elapsed, stopped_at=record.stopped_at, now=data.now,
    )  # fmt: skip
    info = experiment_out(record)
    in_split = int((~data.rows.error).sum())
    return {
        "experiment": {**info, "since": since},
        "pair": info["pair"],
        "coverage": {
            "served": data.served,
            "in_experiment": in_split,
            "coverage": in_split / data.served if data.served else None,
        },
        **report,
        "teacher_vs_student": report["comparison"] if exp.arms == "teacher_vs_student" else {},
    }


def _shadow_rows(services: ExperimentServices, since: float | None) -> tuple[ComparisonRows, AnswerRows]:
    """The comparisons of the window and every experiment's answers in it (each pair's coverage)."""
    services.shadow.flush()  # persist what the worker still buffers so the report counts it
    return services.comparisons.load(since), services.feedback.answer_rows(None, since)


def _current_pair(request: Request) -> dict[str, Any] | None:
    """What the shadow compares now: the serving student against the candidate's, else its teacher."""
    model = request.app.state.store.current
    if model is None:
        return None
    candidate = request.app.state.candidate.current
    if candidate is not None:
        return pair_info(CANDIDATE_PAIR, model.version, candidate.version)
    return pair_info(TEACHER_PAIR, model.version, model.version)


@router.get("/v1/shadow/report", response_model=ShadowReport)
async def shadow_report(request: Request, since: SinceQuery = None) -> dict[str, Any]:
    """Agreement, latency and coverage of the shadow comparisons, overall and per pair of versions."""
    services = _services(request)
    rows, answers = await run_in_threadpool(_shadow_rows, services, _since(since))
    return {
        "shadow_rate": services.shadow.rate,
        "pair": _current_pair(request),
        **build_report(rows, _since(since), answers, services.shadow.timeout_s),
    }


@router.get("/v1/shadow/report.html", response_class=HTMLResponse)
async def shadow_report_html(request: Request, since: SinceQuery = None) -> HTMLResponse:
    """The shadow report as a page with inline SVG plots."""
    services = _services(request)
    rows, answers = await run_in_threadpool(_shadow_rows, services, _since(since))
    report = build_report(rows, _since(since), answers, services.shadow.timeout_s)
    page = await asyncio.to_thread(render_html, report, rows)
    return HTMLResponse(page)


@router.get("/v1/ab/timeseries", responses=errors(404))
async def ab_timeseries_route(
    request: Request,
    bucket_seconds: BucketQuery = 60,
    since: SinceQuery = None,
    experiment: ExperimentQuery = None,
) -> dict[str, Any]:
    """Per time bucket, per arm: users, impressions, clicks, CTR and conversion (in the bucket and
    cumulatively), the anonymous answers apart, and the always-valid interval of the primary
    metric's difference up to the bucket's end."""
    services = _services(request)
    record, exp = _experiment(services, experiment)
    data = await run_in_threadpool(_read_ab, services, record, _since(since))
    series = await asyncio.to_thread(
        ab_timeseries,
        data.rows,
        [exp.control, exp.treatment],
        bucket_seconds,
        data.pre,
        _planned_lift(record),
    )
    return {"experiment": {**experiment_out(record), "since": since}, **series}


@router.get("/v1/shadow/timeseries")
async def shadow_timeseries_route(
    request: Request, bucket_seconds: BucketQuery = 60, since: SinceQuery = None
) -> dict[str, Any]:
    """Per pair of versions, per time bucket: agreement means, the latency ratio, and the share of
    the pair's shadowable answers compared (counted from the pair's start)."""
    services = _services(request)
    rows, answers = await run_in_threadpool(_shadow_rows, services, _since(since))
    series = await asyncio.to_thread(
        shadow_timeseries, rows, bucket_seconds, answers, services.shadow.timeout_s
    )
    return {"shadow_rate": services.shadow.rate, "pair": _current_pair(request), **series}
