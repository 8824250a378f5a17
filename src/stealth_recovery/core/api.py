"""Shared HTTP API types: request values the database can store, and the documented errors."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field


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
