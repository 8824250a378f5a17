"""Request and response bodies of the /v1/retry API (field names as first published)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from stealth_recovery.core.api import Text
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.recovery.schedule import MAX_BACKOFF_MULTIPLIER, MAX_DELAY_MINUTES

_POLICY_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "org_id": 1,
    "name": "Aggressive Recovery",
    "max_retries": 5,
    "initial_delay_minutes": 30,
    "backoff_multiplier": 2,
    "max_delay_minutes": 720,
    "enabled_channels": ["email", "sms"],
    "is_active": True,
    "created_at": "2025-10-18T12:00:00Z",
    "updated_at": "2025-10-18T12:00:00Z",
}


class PolicyCreate(BaseModel):
    """A new retry policy; it becomes the organization's active one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Aggressive Recovery",
                    "max_retries": 5,
                    "initial_delay_minutes": 30,
                    "backoff_multiplier": 2,
                    "max_delay_minutes": 720,
                    "enabled_channels": ["email", "sms"],
                }
            ]
        }
    )

    name: Text = Field(min_length=1, max_length=128)
    max_retries: int = Field(ge=1, le=10, description="reminders at most, 1 to 10")
    initial_delay_minutes: int = Field(
        ge=1, le=MAX_DELAY_MINUTES, description="delay before the first reminder, after the failure"
    )
    backoff_multiplier: float = Field(
        ge=1,
        le=MAX_BACKOFF_MULTIPLIER,
        allow_inf_nan=False,
        description="each next delay is the previous one × this",
    )
    max_delay_minutes: int = Field(
        ge=1, le=MAX_DELAY_MINUTES, description="cap on any delay; at least initial_delay_minutes"
    )
    enabled_channels: list[Channel] = Field(
        min_length=1, max_length=3, description="email, sms and/or whatsapp"
    )

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("max_delay_minutes")
    @classmethod
    def _cap_not_below_initial(cls, value: int, info: ValidationInfo) -> int:
        initial = info.data.get("initial_delay_minutes")
        if initial is not None and value < initial:
            raise ValueError("must be at least initial_delay_minutes")
        return value


class PolicyOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_POLICY_EXAMPLE]}
    )

    id: int
    org_id: int = Field(validation_alias="organization_id")
    name: str
    max_retries: int
    initial_delay_minutes: int
    backoff_multiplier: float
    max_delay_minutes: int
    enabled_channels: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class ActivePolicyOut(BaseModel):
    """The policy new attempts get now: the active one, or the built-in default.

    The default is not a stored row: `id`, `created_at` and `updated_at` are null and
    `is_default` is true.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_POLICY_EXAMPLE, "is_default": False},
                {
                    "id": None,
                    "org_id": 1,
                    "name": "Default (no active policy)",
                    "max_retries": 3,
                    "initial_delay_minutes": 60,
                    "backoff_multiplier": 2,
                    "max_delay_minutes": 1440,
                    "enabled_channels": ["email"],
                    "is_active": True,
                    "created_at": None,
                    "updated_at": None,
                    "is_default": True,
                },
            ]
        }
    )

    id: int | None
    org_id: int
    name: str
    max_retries: int
    initial_delay_minutes: int
    backoff_multiplier: float
    max_delay_minutes: int
    enabled_channels: list[str]
    is_active: bool
    created_at: datetime | None
    updated_at: datetime | None
    is_default: bool = Field(description="true when no policy is active and the default applies")


class RetryStats(BaseModel):
    """Recovery figures of the caller's organization, computed by the database."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "total_attempts": 150,
                    "pending_retries": 23,
                    "sent_count": 100,
                    "outbox_count": 0,
                    "completed_count": 45,
                    "test_payment_count": 0,
                    "failed_count": 5,
                    "unconfirmed_count": 0,
                    "avg_retry_count": 2.3,
                    "recovered_after_end_count": 2,
                }
            ]
        }
    )

    total_attempts: int = Field(description="every recovery attempt, in any status")
    pending_retries: int = Field(
        description="open attempts (created, sent, opened) with a reminder still to send"
    )
    sent_count: int = Field(
        description="messages sent to a customer through a provider (status sent or delivered)"
    )
    outbox_count: int = Field(
        default=0,
        description="messages the local outbox kept instead of sending (never reached a customer)",
    )
    completed_count: int = Field(description="attempts paid for real (test payments excluded)")
    test_payment_count: int = Field(
        default=0,
        description="attempts completed on the pay page's test path: no money moved, never "
        "counted as recovered",
    )
    failed_count: int = Field(description="messages whose status is failed or bounced")
    unconfirmed_count: int = Field(
        description="messages handed to the provider without an answer (a timeout, or the "
        "worker stopped during the hand-over): they may have arrived and are never resent"
    )
    avg_retry_count: float = Field(
        description="mean reminder steps sent per attempt (retry_count), 2 decimals; 0 without "
        "attempts"
    )
    recovered_after_end_count: int = Field(
        default=0,
        description="completed attempts paid after their reminders had ended (the attempt was "
        "cancelled or expired when the money came in); included in completed_count",
    )


class NotificationOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "channel": "email",
                    "recipient": "customer@example.com",
                    "status": "delivered",
                    "provider": "smtp",
                    "provider_message_id": "4BxY1234",
                    "sent_at": "2025-10-18T10:00:00Z",
                    "delivered_at": "2025-10-18T10:00:15Z",
                    "failed_at": None,
                    "error_message": None,
                    "created_at": "2025-10-18T10:00:00Z",
                }
            ]
        },
    )

    id: int
    channel: Channel
    recipient: str | None
    status: NotificationStatus
    provider: str
    provider_message_id: str | None = Field(
        description="the provider's id for the message, to find it in the provider's own logs: "
        "the Twilio message SID, the WhatsApp message id, or for SMTP the queue id the mail "
        "server named in its 250 reply (its whole reply when it named none); null until sent"
    )
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    error_message: str | None
    created_at: datetime


class RetryNowOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"attempt_id": 123, "retry_number": 1, "status": "queued"}]}
    )

    attempt_id: int
    retry_number: int = Field(description="0-based number of the reminder that will be sent")
    status: str = Field(default="queued", description="always `queued`: sending is asynchronous")
