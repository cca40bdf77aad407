"""The one request path: a recommendation request is resolved once, answered, then handed to hooks.

`resolve` reads the history (the request's, else the user's stored one), decides the arm (the A/B
assignment, computed once) and prepares the query (ids to indices, filters to an eligible set over
the live catalogue, whose unavailable items are never eligible) into one `ResolvedRequest`. When the
stored history cannot be read (the shared store is down), the request is answered from the popular
order and its answer says so (`fallback: "history_unavailable"`): a read never fails on the store.
`answer` runs it through the micro-batcher and builds the response; the after-answer hooks (the
served log, the shadow teacher) get the same object inside an `Answer`, and `/v1/compare` runs both
sides of one `ResolvedRequest`, so nothing is read or assigned twice. When the answer fails, the
after-failure hooks get the request alone (the A/B error-rate guardrail counts it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

from app.api.errors import invalid
from app.api.schemas import Arm, RecommendRequest
from app.config import Settings
from app.engine.catalogue import CatalogueView
from app.engine.catalogue_live import LiveCatalogue
from app.engine.model import LoadedModel
from app.engine.recommender import Prepared, Query, Result, UnknownCategory, item_list, prepare
from app.experiment.assignment import (
    FORCE_ARM_HEADER,
    SESSION_HEADER,
    Assignment,
    AssignmentError,
    Experiment,
)
from app.stores.outage import StoreUnavailable

Loc = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class ResolvedRequest:
    """One request as it will be answered: everything after `resolve` reads this, nothing else."""

    body: RecommendRequest
    model: LoadedModel
    history: list[str]  # the raw history that conditions the answer, most recent last
    assignment: Assignment  # the arm, the unit it was decided over, whether a header forced it
    prepared: Prepared  # the arm's query, the history ids the model does not know, the catalogue view
    experiment: str = ""  # the running experiment's name when the arm was assigned ("": none)
    catalogue: LiveCatalogue | None = None  # the live overlay (None: the trained catalogue)
    history_unavailable: bool = False  # the stored history could not be read: answered without it

    @property
    def arm(self) -> Arm:
        return self.assignment.arm

    @property
    def query(self) -> Query:
        return self.prepared.query

    def query_for(self, side: Arm) -> Query:
        """The same prepared query answered by `side` (history, filters and exclusions unchanged)."""
        query = self.prepared.query
        return query if query.side == side else replace(query, side=side)

    @property
    def view(self) -> CatalogueView:
        return self.prepared.view

    def student_query_for(self, model: LoadedModel) -> Query:
        """The same request prepared for another version's student (the candidate in shadow): ids map
        to that version's catalogue, with the overlay applied. Raises HTTPException for a category
        that catalogue lacks."""
        view = None if self.catalogue is None else self.catalogue.view(model)
        return prepare_request(model, self.body, self.history, "student", ("body",), view).query

    def fallback(self, result: Result) -> str | None:
        """The answer's `fallback`: "history_unavailable" when the stored history could not be read
        (the answer is then the popular order), else the result's ("popular" or None)."""
        return "history_unavailable" if self.history_unavailable else result.fallback


@dataclass(frozen=True, eq=False)
class Answer:
    """What an after-answer hook gets: the resolved request and exactly what the client receives."""

    resolved: ResolvedRequest
    response: dict[str, Any]
    inference_ms: float  # from batcher submit to result (the shadow's student latency)


AfterAnswer = Callable[[Answer], Awaitable[None]]
AfterFailure = Callable[[ResolvedRequest], None]  # an answer that failed after its arm was assigned


def limit_errors(req: RecommendRequest, settings: Settings, loc: Loc) -> list[dict[str, Any]]:
    """k and history length against the configured maxima, in FastAPI's 422 error shape."""
    errors: list[dict[str, Any]] = []
    if req.k > settings.max_k:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": (*loc, "k"),
                "msg": f"k must be at most {settings.max_k}",
                "input": req.k,
            }
        )
    if req.history is not None and len(req.history) > settings.max_history:
        errors.append(
            {
                "type": "too_long",
                "loc": (*loc, "history"),
                "msg": f"history has {len(req.history)} ids, at most {settings.max_history} are accepted",
                "input": None,
            }
        )
    return errors


def assign(experiment: Experiment, user_id: str | None, headers: Mapping[str, str] | None) -> Assignment:
    """The request's arm from the experiment (sticky per user, else session); a bad forced arm is a 422."""
    headers = headers or {}
    forced = headers.get(FORCE_ARM_HEADER)
    try:
        return experiment.assign(user_id, headers.get(SESSION_HEADER), forced)
    except AssignmentError as exc:
        raise invalid(("header", FORCE_ARM_HEADER), str(exc), value=forced) from exc


def field_errors(req: RecommendRequest, model: LoadedModel, loc: Loc) -> list[dict[str, Any]]:
    """`fields` names the served version does not have, in FastAPI's 422 error shape."""
    known = model.item_fields
    return [
        {
            "type": "enum",
            "loc": (*loc, "fields", i),
            "msg": f"unknown field {name!r}: version {model.version} has {list(known)}",
            "input": name,
        }
        for i, name in enumerate(req.fields or ())
        if name not in known
    ]


def side_of(arm: str) -> str:
    """The model side that answers an arm: the teacher for "teacher", the student otherwise (the
    serving and candidate arms are both versions' students)."""
    return "teacher" if arm == "teacher" else "student"


def prepare_request(
    model: LoadedModel,
    req: RecommendRequest,
    history: list[str],
    side: str,
    loc: Loc,
    view: CatalogueView | None = None,
) -> Prepared:
    """`prepare` with the request's options and filters over `view`; an unknown category is a 404."""
    f = req.filters
    try:
        return prepare(
            model,
            history=history,
            k=req.k,
            exclude_seen=req.exclude_seen,
            user_id=req.user_id,
            categories=f.categories if f else None,
            exclude_items=f.exclude_items if f else None,
            min_price=f.min_price if f else None,
            max_price=f.max_price if f else None,
            side=side,
            view=view,
        )
    except UnknownCategory as exc:
        # 404, not 422: the request is valid against the schema; the served model lacks the category.
        where = ".".join(str(p) for p in (*loc[1:], "filters", "categories", exc.position))
        known = model.categories if view is None else view.categories
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"{where}: {exc}; the served model knows {known}"
        ) from exc


async def resolve(
    request: Request, body: RecommendRequest, model: LoadedModel, loc: Loc, side: Arm | None = None
) -> ResolvedRequest:
    """Check the limits, read the history once, assign the arm once (or take `side`, for compare, which
    answers with both and is not part of the experiment) and prepare the query once."""
    state = request.app.state
    if errors := limit_errors(body, state.settings, loc):
        raise RequestValidationError(errors)
    unread = False
    if body.history is not None:
        history = body.history
    elif body.user_id is not None:
        try:
            rows = await state.history.history(body.user_id, state.settings.max_history)
            history = [h.item_id for h in rows]
        except StoreUnavailable:  # recorded by the store's guard; the answer says so
            history, unread = [], True
    else:
        history = []
    experiment = state.experiment.experiment
    if side is None:
        assignment = assign(experiment, body.user_id, request.headers)
    else:
        assignment = Assignment(side, "compare", forced=True)
    if assignment.arm == "candidate":
        candidate = state.candidate.current
        if candidate is None:  # this replica has no candidate: served as usual, out of the split
            assignment = Assignment("serving", assignment.unit, forced=True)
        else:
            model = candidate
    if body.fields and (errors := field_errors(body, model, loc)):
        raise RequestValidationError(errors)
    catalogue: LiveCatalogue = state.catalogue
    prepared = prepare_request(model, body, history, side_of(assignment.arm), loc, catalogue.view(model))
    return ResolvedRequest(body, model, history, assignment, prepared, experiment.name, catalogue, unread)


async def run(request: Request, query: Query) -> tuple[Result, float]:
    """One query through the micro-batcher (off the event loop); (result, milliseconds waited)."""
    started = time.perf_counter()
    result = await request.app.state.batcher.submit(query)
    return result, (time.perf_counter() - started) * 1000.0


async def answer(request: Request, resolved: ResolvedRequest) -> dict[str, Any]:
    """The response to a resolved request; the after-answer hooks run on it before it is returned."""
    state = request.app.state
    try:
        result, inference_ms = await run(request, resolved.query)
    except Exception:
        for failed in getattr(state, "after_failure", ()):  # the A/B error-rate guardrail counts it
            failed(resolved)
        raise
    fallback = resolved.fallback(result)
    response = {
        "request_id": uuid.uuid4().hex,
        "model_version": resolved.model.version,
        "arm": resolved.arm,
        "items": item_list(resolved.model, result, resolved.body.fields, resolved.view),
        "fallback": fallback,
        "unknown_items": resolved.prepared.unknown_items,
    }
    state.metrics.count_recommendation(resolved.arm, fallback)
    if state.after_answer:
        done = Answer(resolved, response, inference_ms)
        for hook in state.after_answer:
            await hook(done)
    return response
