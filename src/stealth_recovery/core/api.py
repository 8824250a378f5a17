"""Shared HTTP API types: request values the database can store, and the errors: their one
mapping to HTTP (`add_error_handlers`) and their documentation (`error_responses`)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stealth_recovery.core.errors import DomainError, InvalidInput, RateLimited

log = structlog.get_logger(__name__)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL bytes; refusing them here keeps a bad request a 422.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Letters that render as nothing: a "name" made of them passes every length check.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Control (Cc), format (Cf: bidirectional overrides and isolates, zero-width characters, the
# byte-order mark, soft hyphen), private use, surrogates, line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def invisible_character(value: str) -> str | None:
    """The first invisible or bidirectional-control character of `value`, as `U+XXXX`, or None."""
    for char in value:
        if char in _BLANK_LETTERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def _visible(value: str) -> str:
    # A right-to-left override or a zero-width space in a merchant's name makes the sender a
    # customer reads differ from the one stored (spoofing); a name shows only what it holds.
    found = invisible_character(value)
    if found is not None:
        raise ValueError(
            f"must not contain invisible or bidirectional control characters ({found})"
        )
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is outside the supported date range") from None


def _json_without_nul(value: Any) -> Any:
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(str(key))
            _json_without_nul(item)
    elif isinstance(value, list):
        for item in value:
            _json_without_nul(item)
    return value


MAX_JSON_DEPTH = 64


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("numbers must be finite")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json_document(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a provider's JSON body into values every database can store.

    Raises ValueError (with the reason) for broken JSON, NaN/Infinity or numbers too large for a
    float, nesting deeper than `max_depth` arrays/objects, and NUL characters in strings or keys
    (PostgreSQL `jsonb` refuses `\\u0000`). Real webhook payloads nest a dozen levels at most.
    """
    try:
        document = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _no_nul(value)
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _no_nul(key)
                stack.append((item, depth + 1))
    return document


Text = Annotated[str, AfterValidator(_no_nul)]
# A name people read: a merchant (the e-mail sender name), a person, a policy, a key.
DisplayName = Annotated[str, AfterValidator(_visible)]
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_without_nul)]
# Ids are PostgreSQL `integer`s: a larger number can only be a 404, never a database error.
DbId = Annotated[int, Field(ge=1, le=2**31 - 1)]


def validation_messages(errors: Sequence[Any]) -> list[str]:
    """`field: rule` for each error of a pydantic/FastAPI validation error list."""
    messages = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        messages.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'is not valid')}")
    return messages


class FieldError(BaseModel):
    field: str
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error body: a message, or for 422 one entry per field and rule, and the error's
    stable `type` (`attempt_not_found`, `invalid_input` …) to branch on."""

    detail: str | list[FieldError]
    type: str


_ERROR_TEXT: dict[int, tuple[str, Any, str]] = {
    401: ("missing, invalid or expired credentials", "not authenticated", "not_authenticated"),
    403: ("the caller's role may not do this", "requires role: admin", "role_required"),
    404: (
        "not found in the caller's organization",
        "recovery attempt not found",
        "attempt_not_found",
    ),
    409: (
        "the object's state does not allow this",
        "attempt is already completed",
        "attempt_not_open",
    ),
    410: (
        "the pay link has expired or its attempt is final",
        "this payment link has expired",
        "pay_link_expired",
    ),
    422: (
        "a field breaks a rule; each problem names the field",
        [
            {
                "field": "currency",
                "loc": ["body", "currency"],
                "msg": "must be an ISO 4217 currency code such as EUR or USD",
                "type": "value_error",
            }
        ],
        "invalid_input",
    ),
    429: (
        "too many lookups from this address",
        "too many requests; try again in 12 seconds",
        "rate_limited",
    ),
    503: (
        "a service the action needs does not answer; nothing was changed",
        "the retry queue's broker (Redis) does not answer: nothing was sent; try again when "
        "it is back",
        "queue_unavailable",
    ),
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error codes; `e404="no such policy"` overrides text."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, example, kind = _ERROR_TEXT[code]
        description = descriptions.get(f"e{code}", description)
        responses[code] = {
            "model": ErrorOut,
            "description": description,
            "content": {"application/json": {"example": {"detail": example, "type": kind}}},
        }
    return responses


# The answer of `core.http.LoadSheddingMiddleware` to a request that found no free slot within
# SHED_AFTER_SECONDS, for the routes that document it (`responses={**SHED_RESPONSE}`).
SHED_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorOut,
        "description": "the service is busy (every database connection of the process was taken "
        "for longer than SHED_AFTER_SECONDS): nothing was done; retry after `Retry-After` seconds",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {
            "application/json": {
                "example": {
                    "detail": "the service is busy; retry after the time in Retry-After",
                    "type": "service_busy",
                }
            }
        },
    }
}


# The `type` of errors raised by the framework rather than by our code.
_HTTP_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "field": _field_of(error.get("loc", ())),
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in errors
    ]


def _body(detail: Any, kind: str) -> dict[str, Any]:
    return {"detail": detail, "type": kind}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(_body(validation_detail(exc.errors()), InvalidInput.type), status_code=422)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, InvalidInput):
        detail: Any = [
            {"field": exc.field, "loc": ["body", exc.field], "msg": exc.rule, "type": "value_error"}
        ]
    else:
        detail = exc.detail
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return JSONResponse(_body(detail, exc.type), status_code=exc.status_code, headers=headers)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity_conflict", error=str(exc.__cause__ or exc)[:200])
    return JSONResponse(_body("conflicts with existing data", "conflict"), status_code=409)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Logged as a plain, redacted traceback (core.logging): never the request's body or locals.
    log.error(
        "request_failed",
        method=request.method,
        path=request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return JSONResponse(_body("internal server error", "internal_error"), status_code=500)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "http_error")
    return JSONResponse(_body(exc.detail, kind), status_code=exc.status_code, headers=exc.headers)


def add_error_handlers(app: FastAPI) -> None:
    """The one mapping of errors to HTTP: `{"detail": …, "type": …}` with the error's status."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
