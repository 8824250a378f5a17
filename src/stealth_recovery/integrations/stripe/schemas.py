from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Events the webhook endpoint acts on; the dashboard's endpoint should subscribe to these.
FAILURE_EVENTS: tuple[str, ...] = (
    "invoice.payment_failed",
    "payment_intent.payment_failed",
    "charge.failed",
)
SUCCESS_EVENTS: tuple[str, ...] = (
    "invoice.paid",
    "payment_intent.succeeded",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
)
HANDLED_EVENTS: tuple[str, ...] = FAILURE_EVENTS + SUCCESS_EVENTS


class StripeConnectionIn(BaseModel):
    secret_key: str = Field(
        min_length=1,
        max_length=255,
        description="secret (sk_test_…, sk_live_…) or restricted (rk_…) API key; "
        "a restricted key needs write access to Checkout Sessions",
        examples=["sk_test_51H…"],
    )
    webhook_secret: str = Field(
        min_length=1,
        max_length=255,
        description="signing secret of the webhook endpoint (whsec_…)",
        examples=["whsec_…"],
    )


class StripeConnectionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mode": "test",
                    "secret_key": "sk_test_…4242",
                    "webhook_secret": "whsec_…WXYZ",
                    "webhook_url": "https://recovery.example.com/v1/webhooks/stripe/acme",
                    "enabled_events": list(HANDLED_EVENTS),
                    "created_at": "2026-11-28T09:00:00Z",
                    "updated_at": "2026-11-28T09:00:00Z",
                }
            ]
        }
    )

    mode: Literal["test", "live"]
    secret_key: str = Field(description="masked: the key's prefix and its last four characters")
    webhook_secret: str = Field(description="masked: the secret's prefix and its last four")
    webhook_url: str = Field(description="register this URL as the endpoint in Stripe")
    enabled_events: list[str] = Field(description="the events to subscribe the endpoint to")
    created_at: datetime
    updated_at: datetime


class WebhookAck(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"received": True, "event_id": "evt_1QxYz2AbCdEf", "outcome": "attempt_opened"}
            ]
        }
    )

    received: bool = True
    event_id: str
    outcome: str = Field(
        description="what the event did: attempt_opened, attempt_exists, attempt_cancelled, "
        "attempt_completed, already_final, already_paid, no_matching_attempt, awaiting_payment, "
        "own_checkout_failure, unusable, ignored, duplicate"
    )
