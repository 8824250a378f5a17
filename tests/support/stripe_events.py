"""Stripe as tests see it: an organization connected to the fake Stripe account (`stripe_org`
fixture), signed webhook events, and Stripe objects shaped as in Stripe's API reference."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.support.builders import Account, make_account
from tests.support.stripe_server import FakeStripe

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):04d}{secrets.token_hex(6)}"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header as Stripe documents it: HMAC-SHA256 of "t.payload"."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A webhook event envelope as Stripe sends it."""
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


@dataclass
class StripeOrg:
    """An organization connected to the fake Stripe account, able to receive signed events."""

    client: TestClient
    account: Account
    secret_key: str
    webhook_secret: str

    @property
    def slug(self) -> str:
        return self.account.organization.slug

    @property
    def organization_id(self) -> int:
        return self.account.organization.id

    def post(
        self,
        body: dict[str, Any] | bytes,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        slug: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        header = signature or sign(payload, secret or self.webhook_secret, timestamp)
        return self.client.post(
            f"/v1/webhooks/stripe/{slug or self.slug}",
            content=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )

    def outcome(self, body: dict[str, Any]) -> str:
        """Deliver a signed event; what the webhook says it did (`attempt_opened`, ...)."""
        response = self.post(body)
        assert response.status_code == 200, response.text
        return str(response.json()["outcome"])


def connect(client: TestClient, db: Session, secret_key: str) -> StripeOrg:
    account = make_account(db)
    webhook_secret = "whsec_" + secrets.token_urlsafe(24)
    response = client.put(
        "/v1/integrations/stripe",
        json={"secret_key": secret_key, "webhook_secret": webhook_secret},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    return StripeOrg(client, account, secret_key, webhook_secret)


@pytest.fixture
def stripe_org(client: TestClient, db: Session, stripe_server: FakeStripe) -> StripeOrg:
    return connect(client, db, stripe_server.secret_key)


# -- Stripe objects, shaped as in Stripe's API reference -------------------------------------


def payment_intent(
    *,
    amount: int = 4900,
    currency: str = "eur",
    email: str | None = "jane@example.com",
    name: str | None = "Jane Doe",
    phone: str | None = None,
    decline_code: str | None = "insufficient_funds",
    code: str = "card_declined",
    status: str = "requires_payment_method",
    pi_id: str | None = None,
    metadata: dict[str, str] | None = None,
    customer: str | None = "cus_test_1",
) -> dict[str, Any]:
    pi = pi_id or new_id("pi")
    charge = new_id("ch")
    error = None
    if status == "requires_payment_method":
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": "Your card was declined.",
            "charge": charge,
            "payment_method": {
                "id": new_id("pm"),
                "object": "payment_method",
                "type": "card",
                "billing_details": {
                    "email": email,
                    "name": name,
                    "phone": phone,
                    "address": {"country": "DE"},
                },
            },
        }
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "customer": customer,
        "description": "Subscription renewal",
        "last_payment_error": error,
        "latest_charge": charge,
        "livemode": False,
        "metadata": metadata or {},
        "receipt_email": None,
        "status": status,
    }


def charge(
    *,
    amount: int = 2500,
    currency: str = "usd",
    email: str | None = "sam@example.com",
    name: str | None = "Sam Smith",
    phone: str | None = "+14155550123",
    reason: str | None = "expired_card",
    failure_code: str = "expired_card",
    outcome_type: str = "issuer_declined",
    payment_intent_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_refunded": 0,
        "billing_details": {
            "address": {"country": "US"},
            "email": email,
            "name": name,
            "phone": phone,
        },
        "currency": currency,
        "customer": None,
        "failure_code": failure_code,
        "failure_message": "Your card has expired.",
        "livemode": False,
        "metadata": metadata or {},
        "outcome": {
            "network_status": "declined_by_network",
            "reason": reason,
            "risk_level": "normal",
            "seller_message": "The bank returned the decline code `expired_card`.",
            "type": outcome_type,
        },
        "paid": False,
        "payment_intent": payment_intent_id,
        "receipt_email": None,
        "status": "failed",
    }


def invoice(
    *,
    amount_due: int = 1999,
    currency: str = "gbp",
    email: str | None = "kim@example.com",
    name: str | None = "Kim Lee",
    phone: str | None = None,
    invoice_id: str | None = None,
    payment_intent_id: str | None = None,
    paid: bool = False,
) -> dict[str, Any]:
    return {
        "id": invoice_id or new_id("in"),
        "object": "invoice",
        "amount_due": amount_due,
        "amount_paid": amount_due if paid else 0,
        "amount_remaining": 0 if paid else amount_due,
        "attempt_count": 1,
        "billing_reason": "subscription_cycle",
        "currency": currency,
        "customer": "cus_test_2",
        "customer_address": {"country": "GB"},
        "customer_email": email,
        "customer_name": name,
        "customer_phone": phone,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_test/test",
        "livemode": False,
        "metadata": {},
        "paid": paid,
        "payment_intent": payment_intent_id,
        "status": "paid" if paid else "open",
    }
