"""Request and response bodies of the /v1/retry API (field names as first published)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from stealth_recovery.core.api import Text
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.recovery.schedule import MAX_BACKOFF_MULTIPLIER, MAX_DELAY_MINUTES
from stealth_recovery.recovery.windows import (
    SendWindow,
    check_zone,
    day_names,
    format_clock,
    parse_clock,
)

DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_POLICY_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "org_id": 1,
    "name": "Aggressive Recovery",
    "max_retries": 5,
    "initial_delay_minutes": 30,
    "backoff_multiplier": 2,
    "max_delay_minutes": 720,
    "enabled_channels": ["email", "sms"],
    "window_start": "09:00",
    "window_end": "20:00",
    "window_days": ["mon", "tue", "wed", "thu", "fri"],
    "window_skip_holidays": True,
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
                    "window_start": "09:00",
                    "window_end": "20:00",
                    "window_days": ["mon", "tue", "wed", "thu", "fri"],
                    "window_skip_holidays": True,
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
    window_start: str | None = Field(
        default=None,
        description="send window opening, local time of the customer as HH:MM (e.g. 09:00); "
        "a reminder due outside the window goes at its next opening; null: no window",
    )
    window_end: str | None = Field(
        default=None,
        description="send window closing (exclusive), HH:MM up to 24:00, after window_start: "
        "a window cannot cross midnight",
    )
    window_days: list[DayName] | None = Field(
        default=None,
        min_length=1,
        max_length=7,
        description="days the window opens (mon … sun), at least one; null: every day",
    )
    window_skip_holidays: bool = Field(
        default=False,
        description="also closed on national public holidays of the customer's country "
        "(from the phone number, else the locale)",
    )

    @field_validator("window_start", "window_end")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        return None if value is None else format_clock(parse_clock(value))

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


class PolicyPreviewIn(PolicyCreate):
    """Numbers and a window to preview, and where the customer is; nothing is saved."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "max_retries": 3,
                    "initial_delay_minutes": 60,
                    "backoff_multiplier": 2,
                    "max_delay_minutes": 1440,
                    "enabled_channels": ["email"],
                    "window_start": "09:00",
                    "window_end": "20:00",
                    "window_days": ["mon", "tue", "wed", "thu", "fri"],
                    "window_skip_holidays": True,
                    "start": "2026-12-24T18:30:00Z",
                    "customer_timezone": "Europe/Berlin",
                    "customer_country": "DE",
                }
            ]
        }
    )

    name: Text = Field(default="preview", min_length=1, max_length=128)
    start: AwareDatetime | None = Field(
        default=None, description="when the payment fails (the attempt opens); default now"
    )
    customer_timezone: Text = Field(
        default="UTC", min_length=1, max_length=64, description="the customer's IANA time zone"
    )
    customer_country: Text | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="the customer's ISO 3166 country, for its public holidays",
    )

    @field_validator("start")
    @classmethod
    def _start(cls, value: datetime | None) -> datetime | None:
        # Ten reminders a year apart must stay within what dates can hold.
        if value is not None and not 1970 <= value.year <= 2100:
            raise ValueError("must be between the years 1970 and 2100")
        return value

    @field_validator("customer_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("customer_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.isascii() or not value.isalpha():
            raise ValueError("must be an ISO 3166 alpha-2 country code such as DE")
        return value.upper()


class PreviewReminder(BaseModel):
    number: int = Field(description="1 for the first reminder")
    due_at: datetime = Field(description="when the backoff makes it due (UTC)")
    send_at: datetime = Field(description="when it goes: due_at, or the window's next opening")
    local_send_at: str = Field(description="send_at in the customer's time zone, ISO 8601")
    moved: bool = Field(description="true when the send window moved it")


class PolicyPreviewOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_timezone": "Europe/Berlin",
                    "customer_country": "DE",
                    "start": "2026-12-24T18:30:00Z",
                    "reminders": [
                        {
                            "number": 1,
                            "due_at": "2026-12-24T19:30:00Z",
                            "send_at": "2026-12-28T08:00:00Z",
                            "local_send_at": "2026-12-28T09:00:00+01:00",
                            "moved": True,
                        }
                    ],
                }
            ]
        }
    )

    customer_timezone: str
    customer_country: str | None
    start: datetime
    reminders: list[PreviewReminder]


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
    window_start: str | None = Field(description="HH:MM local time of the customer; null: none")
    window_end: str | None = Field(description="HH:MM (exclusive); null: no window")
    window_days: list[str] | None = Field(description="days the window opens; null: no window")
    window_skip_holidays: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> PolicyOut:
        return cls.model_validate({**_window_out(row), **_columns(row)})


def _columns(row: Any) -> dict[str, Any]:
    return {
        name: getattr(row, name)
        for name in (
            "id",
            "organization_id",
            "name",
            "max_retries",
            "initial_delay_minutes",
            "backoff_multiplier",
            "max_delay_minutes",
            "enabled_channels",
            "is_active",
            "created_at",
            "updated_at",
        )
    }


def _window_out(row: Any) -> dict[str, Any]:
    """The API's window fields of a policy row (all null without a window)."""
    return window_fields(row.send_window)


def window_fields(window: SendWindow | None) -> dict[str, Any]:
    """The API's window fields of a `SendWindow` (all null without one)."""
    return {
        "window_start": format_clock(window.start_minute) if window else None,
        "window_end": format_clock(window.end_minute) if window else None,
        "window_days": day_names(window.days) if window else None,
        "window_skip_holidays": window.skip_holidays if window else False,
    }


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
                    "window_start": None,
                    "window_end": None,
                    "window_days": None,
                    "window_skip_holidays": False,
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
    window_start: str | None = None
    window_end: str | None = None
    window_days: list[str] | None = None
    window_skip_holidays: bool = False
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
