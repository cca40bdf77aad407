"""Typed dependencies: what routes get from `app.state`, readiness (503), admin auth, and the
settings-dependent validation that pydantic Field constraints cannot express statically.

Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in its thread pool,
a thread hop per dependency per request (measured ~0.3 ms each under load on the hot path)."""

from __future__ import annotations

import email.message
import hmac
import json
import math
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.history import HistoryStore
from app.model_store import LoadedModel, ModelStore
from app.recommender import Prepared, UnknownCategory, prepare
from app.schemas import RecommendRequest


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_model(request: Request) -> LoadedModel:
    """The current model, or 503 while none is loaded (start-up, or nothing published yet)."""
    return current_model(request)


def current_model(request: Request) -> LoadedModel:
    """`get_model` as a plain call, for the hot route that skips dependency resolution."""
    model = request.app.state.store.current
    if model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet", headers={"Retry-After": "5"}
        )
    return model


async def get_history(request: Request) -> HistoryStore:
    return request.app.state.history


async def require_admin(request: Request) -> None:
    """Bearer token from RECDISTILL_ADMIN_TOKEN; without that setting the admin API is off (403)."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "admin API disabled: RECDISTILL_ADMIN_TOKEN is not set"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid admin token")


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
HistoryDep = Annotated[HistoryStore, Depends(get_history)]
AdminDep = Depends(require_admin)


def invalid(
    loc: tuple[Any, ...], msg: str, kind: str = "value_error", value: Any = None
) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for checks that need settings or the loaded model."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


def limit_errors(req: RecommendRequest, settings: Settings, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """k and history length against the configured maxima."""
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


async def history_ids(request: Request, req: RecommendRequest) -> list[str]:
    """What conditions an answer: the request's history, else user_id's stored history, else none."""
    if req.history is not None:
        return req.history
    if req.user_id is not None:
        state = request.app.state
        return [h.item_id for h in await state.history.history(req.user_id, state.settings.max_history)]
    return []


def prepare_request(
    model: LoadedModel, req: RecommendRequest, history: list[str], side: str, loc: tuple[Any, ...]
) -> Prepared:
    """`prepare` with the request's options and filters; an unknown category is a 422 at `loc`."""
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
        )
    except UnknownCategory as exc:
        raise invalid(
            (*loc, "filters", "categories", exc.position), f"{exc}; known: {model.categories}", value=exc.name
        ) from exc


BodyT = TypeVar("BodyT", bound=BaseModel)


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: application/json or application/*+json; anything else is not parsed."""
    if not content_type:
        return False
    if content_type.startswith("application/json"):
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def read_json_body(request: Request, model: type[BodyT]) -> BodyT:
    """Validate the JSON body in one pass (`model_validate_json`, no intermediate dicts).

    The hot route uses this instead of a body parameter because FastAPI's generic body handling
    (json.loads, then field validation through its dependency machinery) was ~1/5 of the event loop's
    time per request (benchmark, issue 3). Errors keep FastAPI's exact 422 shape: `loc` starts with
    "body", malformed JSON is `json_invalid` at its character position, an empty body is `missing`.
    """
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(request.headers.get("content-type")):
        try:  # FastAPI validates the raw text, which can never be an object
            model.model_validate(raw.decode())
        except (ValidationError, UnicodeDecodeError) as exc:
            raise RequestValidationError(_body_errors(exc, raw)) from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return _validate_slow(raw, model)  # FastAPI's decoder: same messages and positions
        raise RequestValidationError(_body_errors(exc, raw)) from exc


def _validate_slow(raw: bytes, model: type[BodyT]) -> BodyT:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(_body_errors(exc, raw)) from exc


def _body_errors(exc: ValidationError | UnicodeDecodeError, raw: bytes) -> list[dict[str, Any]]:
    if isinstance(exc, UnicodeDecodeError):
        return [{"type": "model_attributes_type", "loc": ("body",), "msg": str(exc), "input": None}]
    return [_fastapi_error(e) for e in exc.errors(include_url=False)]


_NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


def _fastapi_error(error: Any) -> dict[str, Any]:
    """A pydantic error as FastAPI reports it for a body: loc under "body"; a body that is not an
    object is `model_attributes_type` (FastAPI validates bodies in from-attributes mode)."""
    if not error["loc"] and error["type"] == "model_type":
        return {
            "type": "model_attributes_type",
            "loc": ("body",),
            "msg": _NOT_AN_OBJECT,
            "input": error["input"],
        }
    return {**error, "loc": ("body", *error["loc"])}


def json_safe(value: Any) -> Any:
    """`value` with every NaN/±Infinity float, at any depth, as the string "nan", "inf" or "-inf".

    Python's json accepts the bare tokens NaN and Infinity in a request, but a response may not carry
    them (Starlette's JSONResponse refuses them), so a 422 that echoes one back must spell it out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 (`detail: [{type, loc, msg, input}]`), made JSON-safe for every route.

    Regression: with FastAPI's default handler a NaN or Infinity anywhere in a body (e.g.
    `{"filters": {"min_price": NaN}}`) was echoed in the error's `input`, the response could not be
    encoded, and the client got a 500 with a traceback in the log instead of a 422 naming the field."""
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only
        raise exc
    return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents `model` as the JSON body of a route that reads it itself."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    invalid_ref = {"$ref": "#/components/schemas/HTTPValidationError"}
    return {
        "requestBody": {"content": {"application/json": {"schema": ref}}, "required": True},
        "responses": {
            "422": {
                "description": "Validation Error",
                "content": {"application/json": {"schema": invalid_ref}},
            }
        },
    }
