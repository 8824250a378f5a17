"""Bodies of /v1/webhook-endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stealth_recovery.core.api import DisplayName, Text
from stealth_recovery.webhooks.models import EventType
from stealth_recovery.webhooks.targets import MAX_URL_LENGTH

_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "url": "https://billing.example.com/hooks/stealth-recovery",
    "description": "billing system",
    "event_types": ["attempt.recovered", "attempt.cancelled"],
    "enabled": True,
    "failing_since": None,
    "disabled_at": None,
    "disabled_reason": None,
    "previous_secret_expires_at": None,
    "created_at": "2026-12-01T09:00:00Z",
    "updated_at": "2026-12-01T09:00:00Z",
}
_SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

Url = Text


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://billing.example.com/hooks/stealth-recovery",
                    "event_types": ["attempt.recovered", "attempt.cancelled"],
                    "description": "billing system",
                }
            ]
        },
    )

    url: Url = Field(min_length=1, max_length=MAX_URL_LENGTH)
    # Empty or left out: every event type.
    event_types: list[EventType] = Field(default_factory=list, max_length=len(EventType))
    description: DisplayName | None = Field(default=None, max_length=200)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"enabled": True}, {"event_types": []}]},
    )

    url: Url | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    event_types: list[EventType] | None = Field(default=None, max_length=len(EventType))
    description: DisplayName | None = Field(default=None, max_length=200)
    enabled: bool | None = None


class RotateSecret(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"overlap_hours": 24}]}
    )

    # How long the current secret keeps signing beside the new one.
    overlap_hours: int = Field(default=24, ge=0, le=168)


class EndpointOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ENDPOINT_EXAMPLE]})

    id: int
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    """The answer that shows the signing secret: creation and rotation, and never again."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ENDPOINT_EXAMPLE, "secret": _SECRET_EXAMPLE}]}
    )

    secret: str


class AttemptOut(BaseModel):
    attempted_at: datetime
    succeeded: bool
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None


_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "event_id": "evt_0193f1c2a4b07d5e3f19a2c4b6d8",
    "event_type": "attempt.recovered",
    "status": "succeeded",
    "tries": 2,
    "next_attempt_at": None,
    "delivered_at": "2026-12-01T09:01:02Z",
    "replay": False,
    "created_at": "2026-12-01T09:00:00Z",
    "attempts": [
        {
            "attempted_at": "2026-12-01T09:00:00Z",
            "succeeded": False,
            "status_code": 503,
            "latency_ms": 41,
            "response_excerpt": "upstream unavailable",
            "error": "HTTP 503",
        },
        {
            "attempted_at": "2026-12-01T09:01:02Z",
            "succeeded": True,
            "status_code": 200,
            "latency_ms": 38,
            "response_excerpt": "ok",
            "error": None,
        },
    ],
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: int
    event_id: str
    event_type: str
    status: str
    tries: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    replay: bool
    created_at: datetime
    attempts: list[AttemptOut]
