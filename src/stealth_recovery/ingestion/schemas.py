"""The failed-payment report a merchant's server sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from stealth_recovery.core.api import JsonObject, Text, UtcDateTime
from stealth_recovery.core.contacts import normalise_email, normalise_phone
from stealth_recovery.ingestion.service import (
    normalise_currency,
    normalise_locale,
    normalise_timezone,
    phone_region,
)

PAYMENT_FAILED_EXAMPLE: dict[str, Any] = {
    "transaction_ref": "inv_1001",
    "amount_minor": 4999,
    "currency": "EUR",
    "customer_email": "jane.doe@example.com",
    "customer_phone": "+49 151 23456789",
    "customer_name": "Jane Doe",
    "customer_locale": "de-DE",
    "customer_timezone": "Europe/Berlin",
    "failure_reason": "Your card has insufficient funds.",
    "decline_code": "insufficient_funds",
    "gateway": "stripe",
    "occurred_at": "2026-11-01T12:00:00Z",
    "idempotency_key": "evt_1QxYz2",
    "psp_customer_id": "cus_Q1w2e3",
    "psp_payment_id": "pi_3Nf9",
    "metadata": {"plan": "pro-monthly"},
}


class PaymentFailedIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PAYMENT_FAILED_EXAMPLE]})

    transaction_ref: Text = Field(
        min_length=1,
        max_length=255,
        description="your own reference of the payment; one transaction per reference",
    )
    amount_minor: int = Field(
        gt=0,
        le=10**15,
        description="amount in the currency's ISO 4217 minor unit (4999 = 49.99 EUR, "
        "500 = 500 JPY, 1299000 = 12,990.00 HUF, 5120 = 5.120 KWD)",
    )
    currency: Text = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. EUR")
    customer_locale: Text = Field(
        default="en",
        min_length=1,
        max_length=35,
        description="language and region for messages and the pay page (en, de_DE, pt-BR)",
    )
    customer_email: Text | None = Field(default=None, max_length=320)
    customer_phone: Text | None = Field(
        default=None,
        max_length=64,
        description="international format (+49…); without + it is read in the locale's region",
    )
    customer_name: Text | None = Field(default=None, max_length=200)
    customer_timezone: Text | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="IANA time zone (Europe/Berlin), for send windows and dates in messages; "
        "without it: the phone number's zone, else the zone of the locale's country, else UTC",
    )
    failure_reason: Text | None = Field(default=None, max_length=500)
    decline_code: Text | None = Field(
        default=None,
        max_length=64,
        description="the gateway's decline code; decides soft / customer_action / hard",
    )
    gateway: Text = Field(default="api", min_length=1, max_length=64, examples=["stripe"])
    occurred_at: UtcDateTime = Field(description="when the payment failed, with a time zone")
    idempotency_key: Text | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="the same key twice is one failure; default: gateway + ref + occurred_at",
    )
    psp_customer_id: Text | None = Field(default=None, max_length=255)
    psp_payment_id: Text | None = Field(default=None, max_length=255)
    metadata: JsonObject = Field(default_factory=dict, description="stored as given")

    @field_validator("transaction_ref")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalise_currency(value)

    @field_validator("customer_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        return normalise_locale(value)

    @field_validator("customer_timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return normalise_timezone(value) if value is not None else None

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value is not None else None

    @field_validator("customer_phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        locale = info.data.get("customer_locale")
        return normalise_phone(value, phone_region(locale) if locale else None)
