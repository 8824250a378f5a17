from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Events the webhook endpoint acts on; the merchant's Stripe endpoint subscribes to these.
FAILURE_EVENTS: tuple[str, ...] = (
    "invoice.payment_failed",
    "payment_intent.payment_failed",
    "charge.failed",
)
SUCCESS_EVENTS: tuple[str, ...] = (
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice_payment.paid",
    "payment_intent.succeeded",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
)
# Events after which nothing is owed any more (Stripe's API reference, "Types of events"), and
# the reason the attempt is cancelled with, as the merchant reads it.
DEBT_ENDED_EVENTS: dict[str, str] = {
    "invoice.voided": "invoice voided in Stripe",
    "invoice.marked_uncollectible": "invoice marked uncollectible in Stripe",
    "invoice.deleted": "invoice deleted in Stripe",
    "customer.subscription.deleted": "subscription cancelled in Stripe",
    "payment_intent.canceled": "payment cancelled in Stripe",
    "customer.deleted": "customer deleted in Stripe",
}
HANDLED_EVENTS: tuple[str, ...] = FAILURE_EVENTS + SUCCESS_EVENTS + tuple(DEBT_ENDED_EVENTS)


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
        "attempt_completed, attempt_completed_after_end, second_payment, already_final, "
        "already_paid, debt_ended, no_matching_attempt, "
        "awaiting_payment, own_checkout_failure, own_checkout_event, unusable, ignored, duplicate"
    )
