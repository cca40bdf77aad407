"""Rollout routes: the candidate version beside the serving one, and named experiments (admin API to
start, stop and reset them; `GET /v1/experiments` to list them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminDep, StoreDep
from app.api.openapi import errors
from app.api.rollout_schemas import (
    CandidateRequest,
    CandidateResponse,
    ExperimentList,
    ExperimentOut,
    ExperimentRequest,
    ExperimentReset,
)
from app.engine.candidate import CandidateSlot
from app.engine.model_store import ModelStore, ReloadRefused
from app.experiment.sequential import PLANNED_LIFT
from app.experiment.services import ExperimentConflict, ExperimentServices
from app.experiment.shadow_report import pair_info
from app.stores.pins import PinError
from app.stores.records import ExperimentRecord

router = APIRouter()


def _services(request: Request) -> ExperimentServices:
    return request.app.state.experiment


def _candidate(request: Request) -> CandidateSlot:
    return request.app.state.candidate


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def experiment_out(record: ExperimentRecord) -> dict[str, Any]:
    """An experiment as `/v1/experiments` and the A/B report show it."""
    teacher = record.arms == "teacher_vs_student"
    return {
        "name": record.name,
        "arms": record.arms,
        "pair": pair_info(record.arms, record.control_version or "", record.treatment_version or ""),
        "treatment_share": record.treatment_share,
        "teacher_share": record.treatment_share if teacher else None,
        "candidate_share": None if teacher else record.treatment_share,
        "started_at": _time(record.started_at),
        "stopped_at": _time(record.stopped_at),
        "reset_at": _time(record.reset_at),
        "running": record.running,
        "source": record.source,
        "planned_lift": PLANNED_LIFT if record.planned_lift is None else record.planned_lift,
    }


# -- the candidate ------------------------------------------------------------------------------------


@router.post(
    "/admin/candidate",
    response_model=CandidateResponse,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(400, 401, 403, 409, 413),
)
async def set_candidate(request: Request, body: CandidateRequest, store: StoreDep) -> CandidateResponse:
    """Verify a version and make it every replica's candidate (stored beside the pin); 409 if refused."""
    slot = _candidate(request)
    previous = slot.current.version if slot.current else None
    if (running := _services(request).candidate_in_use()) and body.version != previous:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"experiment {running!r} serves the candidate: stop it first"
        )
    try:
        await run_in_threadpool(slot.set, body.version, "admin")
    except (ReloadRefused, PinError) as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"candidate {body.version} refused, candidate still {previous}: {exc}"
        ) from exc
    return _candidate_response(slot, previous, store)


@router.delete(
    "/admin/candidate",
    response_model=CandidateResponse,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(401, 403, 409),
)
async def clear_candidate(request: Request, store: StoreDep) -> CandidateResponse:
    """Clear the stored candidate: every replica goes back to RECDISTILL_CANDIDATE_VERSION (none when
    unset) and the shadow to the teacher without one; 409 while an experiment serves it."""
    if running := _services(request).candidate_in_use():
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"experiment {running!r} serves the candidate: stop it first"
        )
    slot = _candidate(request)
    previous = slot.current.version if slot.current else None
    try:
        await run_in_threadpool(slot.unset)
    except (ReloadRefused, PinError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"candidate still {previous}: {exc}") from exc
    return _candidate_response(slot, previous, store)


def _candidate_response(slot: CandidateSlot, previous: str | None, store: ModelStore) -> CandidateResponse:
    serving = store.current.version if store.current else None
    held = slot.current
    return CandidateResponse(
        candidate=held.version if held else None,
        previous=previous,
        serving=serving,
        candidate_source=slot.source if held else None,
    )


# -- experiments --------------------------------------------------------------------------------------


@router.get("/v1/experiments", response_model=ExperimentList, tags=["experiment"])
async def list_experiments(request: Request) -> dict[str, Any]:
    """Every named experiment, oldest first, and which one runs."""
    services = _services(request)
    records = await run_in_threadpool(services.experiments.list)
    running = services.record.name if services.record is not None else None
    return {"running": running, "experiments": [experiment_out(r) for r in records]}


@router.post(
    "/admin/experiments",
    response_model=ExperimentOut,
    status_code=201,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(400, 401, 403, 409, 413),
)
async def start_experiment(request: Request, body: ExperimentRequest) -> dict[str, Any]:
    """Start a named experiment now; 409 when one runs, the name is taken, or no candidate is loaded."""
    share = body.candidate_share if body.arms == "serving_vs_candidate" else body.teacher_share
    share = (body.teacher_share or body.candidate_share or 0.0) if share is None else share
    try:
        record = await run_in_threadpool(
            _services(request).start, body.name, body.arms, share, body.planned_lift
        )
    except ExperimentConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return experiment_out(record)


@router.post(
    "/admin/experiments/{name}/stop",
    response_model=ExperimentOut,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(401, 403, 404),
)
async def stop_experiment(request: Request, name: str) -> dict[str, Any]:
    """Stop an experiment: its report keeps the answers up to now; every unit gets the control arm."""
    record = await run_in_threadpool(_services(request).stop, name)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no experiment named {name!r}")
    return experiment_out(record)


@router.post(
    "/admin/experiments/{name}/reset",
    response_model=ExperimentReset,
    dependencies=[AdminDep],
    tags=["admin"],
    responses=errors(401, 403, 404),
)
async def reset_experiment(request: Request, name: str) -> dict[str, Any]:
    """Delete the experiment's served answers and feedback: its report starts again from nothing."""
    result = await run_in_threadpool(_services(request).reset, name)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no experiment named {name!r}")
    record, deleted = result
    return {"experiment": experiment_out(record), "deleted_answers": deleted}
