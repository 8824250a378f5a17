"""Response bodies of the attempt and recovery-link API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stealth_recovery.core.api import Text
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.recovery.models import AttemptStatus

TRANSACTION_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "transaction_ref": "inv_1001",
    "amount_minor": 4999,
    "currency": "EUR",
    "customer_email": "jane.doe@example.com",
    "customer_phone": "+4915123456789",
    "customer_name": "Jane Doe",
    "customer_locale": "de_DE",
    "customer_timezone": "Europe/Berlin",
    "psp_customer_id": "cus_Q1w2e3",
    "psp_payment_id": "pi_3Nf9",
    "created_at": "2026-11-01T12:00:03Z",
}
ATTEMPT_EXAMPLE: dict[str, Any] = {
    "id": 123,
    "status": "created",
    "pay_url": "https://pay.example.com/pay/q7yE2b4kP0S1m9n8Xc3vL5tR6uW2zA1bC4dE7fG8hJ0",
    "expires_at": "2026-11-08T12:00:03Z",
    "opened_at": None,
    "completed_at": None,
    "cancelled_at": None,
    "cancel_reason": None,
    "paid_via": None,
    "paid_after_end": False,
    "second_payment_at": None,
    "second_payment_ref": None,
    "retry_count": 0,
    "max_retries": 3,
    "last_retry_at": None,
    "next_retry_at": "2026-11-01T13:00:03Z",
    "decline_code": "insufficient_funds",
    "decline_category": "soft",
    "policy_id": 1,
    "initial_delay_minutes": 60,
    "backoff_multiplier": 2.0,
    "max_delay_minutes": 1440,
    "enabled_channels": ["email", "sms"],
    "created_at": "2026-11-01T12:00:03Z",
    "updated_at": "2026-11-01T12:00:03Z",
    "transaction": TRANSACTION_EXAMPLE,
    "next_reminder": {"due_at": "2026-11-01T13:00:03Z", "retry_number": 0, "channels": ["email"]},
}


class TransactionOut(BaseModel):
    id: int
    transaction_ref: str = Field(description="the merchant's own reference of the payment")
    amount_minor: int = Field(description="amount in the currency's minor unit (cents)")
    currency: str
    customer_email: str | None
    customer_phone: str | None
    customer_name: str | None
    customer_locale: str
    customer_timezone: str
    psp_customer_id: str | None
    psp_payment_id: str | None
    created_at: datetime


class NextReminder(BaseModel):
    due_at: datetime = Field(
        description="when the step is due (while a worker sends it: its lease end)"
    )
    retry_number: int = Field(description="0-based number of the reminder step")
    channels: list[str] = Field(
        description="enabled channels the customer can be reached on; empty means the step "
        "will find no one to notify"
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ATTEMPT_EXAMPLE]})

    id: int
    status: AttemptStatus
    pay_url: str = Field(description="the customer's pay link; valid until `expires_at`")
    expires_at: datetime
    opened_at: datetime | None
    completed_at: datetime | None
    test_payment: bool = Field(
        default=False,
        description="completed on the pay page's test path: no money moved, never counted as "
        "recovered",
    )
    cancelled_at: datetime | None
    cancel_reason: str | None
    paid_via: str | None = Field(
        default=None,
        description='the payment that completed the attempt: "debt" (the original invoice or '
        'payment itself), "checkout:<payment intent id>" (a recovery Checkout), "test_payment" '
        '(the pay page\'s test path), "api" (completed through the API) or "demo"',
    )
    paid_after_end: bool = Field(
        description="paid after the attempt had ended (cancelled or expired): recovered late"
    )
    second_payment_at: datetime | None = Field(
        description="a second, different payment arrived for this attempt after it was "
        "completed, by whatever path (refund one)"
    )
    second_payment_ref: str | None = Field(
        description='the second payment: "debt" (the original invoice or payment itself) or '
        '"checkout:<payment intent id>"'
    )
    retry_count: int = Field(description="reminder steps sent so far")
    max_retries: int
    last_retry_at: datetime | None
    next_retry_at: datetime | None
    decline_code: str | None
    decline_category: DeclineCategory
    policy_id: int | None = Field(description="the policy copied at opening; null for the default")
    initial_delay_minutes: int
    backoff_multiplier: float
    max_delay_minutes: int
    enabled_channels: list[str]
    created_at: datetime
    updated_at: datetime
    transaction: TransactionOut
    next_reminder: NextReminder | None = Field(
        description="null when the attempt is final or no reminder is left"
    )


class AttemptPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [ATTEMPT_EXAMPLE], "next_cursor": "WyIyMDI2..."}]}
    )

    items: list[AttemptOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


class CancelRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "customer paid by bank transfer"}]}
    )

    reason: Text = Field(default="cancelled by an operator", min_length=1, max_length=255)


class RecoveryView(BaseModel):
    """What the customer sees behind a pay link (no contact data)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "merchant_name": "Acme Subscriptions",
                    "amount_minor": 4999,
                    "currency": "EUR",
                    "amount_display": "49,99 €",
                    "locale": "de_DE",
                    "customer_name": "Jane Doe",
                    "status": "opened",
                    "decline_category": "soft",
                    "what_happened": "Your payment of 49,99 € to Acme Subscriptions did not go "
                    "through.",
                    "expires_at": "2026-11-08T12:00:03Z",
                    "pay_action": "https://pay.example.com/pay/q7yE2b4k…/pay",
                }
            ]
        }
    )

    merchant_name: str
    amount_minor: int
    currency: str
    amount_display: str = Field(description="the amount formatted for the customer's locale")
    locale: str
    customer_name: str | None
    status: AttemptStatus
    decline_category: DeclineCategory
    what_happened: str
    expires_at: datetime
    pay_action: str = Field(description="POST here (an HTML form) to pay")


class CompletedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 123,
                    "status": "completed",
                    "completed_at": "2026-11-01T14:02:00Z",
                    "changed": True,
                }
            ]
        }
    )

    id: int
    status: AttemptStatus
    completed_at: datetime | None
    changed: bool = Field(description="false when the attempt was already completed")
