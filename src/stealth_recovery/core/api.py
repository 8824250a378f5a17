"""Shared HTTP API types: request values the database can store, and the documented errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL bytes; refusing them here keeps a bad request a 422.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
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


Text = Annotated[str, AfterValidator(_no_nul)]
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_without_nul)]
# Ids are PostgreSQL `integer`s: a larger number can only be a 404, never a database error.
DbId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class FieldError(BaseModel):
    field: str
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every 4xx body: a message, or for 422 one entry per field and rule."""

    detail: str | list[FieldError]


_ERROR_TEXT: dict[int, tuple[str, Any]] = {
    401: ("missing, invalid or expired credentials", "not authenticated"),
    403: ("the caller's role may not do this", "requires role: admin"),
    404: ("not found in the caller's organization", "recovery attempt not found"),
    409: ("the object's state does not allow this", "attempt is already completed"),
    410: ("the pay link has expired or its attempt is final", "this payment link has expired"),
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
    ),
    429: ("too many lookups from this address", "too many requests; try again in 12 seconds"),
    503: (
        "a service the action needs does not answer; nothing was changed",
        "the retry queue's broker (Redis) does not answer: nothing was sent; try again when "
        "it is back",
    ),
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error codes; `e404="no such policy"` overrides text."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, example = _ERROR_TEXT[code]
        description = descriptions.get(f"e{code}", description)
        responses[code] = {
            "model": ErrorOut,
            "description": description,
            "content": {"application/json": {"example": {"detail": example}}},
        }
    return responses
