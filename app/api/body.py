"""Request bodies in, JSON out, for the routes that skip FastAPI's generic body handling.

`read_json_body` validates the hot route's body in one pass and keeps FastAPI's exact 422 shape;
`json_body_doc` documents such a body in the OpenAPI schema; `json_response` serialises with orjson.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

import orjson
from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

BodyT = TypeVar("BodyT", bound=BaseModel)


def json_response(payload: Any, status_code: int = 200) -> Response:
    """orjson straight to bytes: the hot path skips response-model re-validation."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


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
    time per request (measured with bench/service.py). Errors keep FastAPI's exact 422 shape: `loc` starts with
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
    except UnicodeDecodeError as exc:  # not UTF-8 (nor UTF-16/32): FastAPI's own answer for a body route
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "There was an error parsing the body") from exc
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
