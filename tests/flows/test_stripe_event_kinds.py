"""Every kind behind the replayed cases: each debt-ending event type, each API version's shape
in each order, and a hard decline that sticks to its payment through every channel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.dashboard.timeline import build_timeline
from stealth_recovery.integrations.stripe.schemas import (
    DEBT_ENDED_EVENTS,
    FAILURE_EVENTS,
    HANDLED_EVENTS,
    SUCCESS_EVENTS,
)
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import api_key_headers, see_committed
from tests.support.stripe_events import (
    StripeOrg,
    charge,
    event,
    invoice,
    new_id,
    payment_intent,
)
from tests.support.stripe_server import FakeStripe

README = Path(__file__).parents[2] / "README.md"
OLD_VERSION = "2024-06-20"
BASIL = "2025-03-31.basil"


def _attempts(db: Session) -> list[RecoveryAttempt]:
    see_committed(db)
    return list(db.scalars(select(RecoveryAttempt).order_by(RecoveryAttempt.id)))


def _versioned(event_type: str, obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {**event(event_type, obj), "api_version": version}


# -- one payment: an invoice, its payment intent and its charge, in two API versions' shapes ---


def _payment(
    version: str, *, decline_code: str = "insufficient_funds"
) -> dict[str, dict[str, Any]]:
    """The three objects Stripe sends about one failed invoice payment, as `version` shapes
    them: before basil they name each other; from basil on the invoice names no payment intent,
    the payment intent and the charge name no invoice, and the subscription sits in `parent`."""
    inv_id, pi_id, sub_id = new_id("in"), new_id("pi"), new_id("sub")
    inv = invoice(invoice_id=inv_id, payment_intent_id=pi_id, amount_due=2000, currency="usd")
    pi = payment_intent(pi_id=pi_id, amount=2000, currency="usd", decline_code=decline_code)
    pi["customer"] = inv["customer"]
    ch = charge(amount=2000, currency="usd", payment_intent_id=pi_id, reason=decline_code)
    ch["failure_code"] = "card_declined"
    pi["latest_charge"] = ch["id"]
    if version == BASIL:
        for key in ("payment_intent", "charge", "paid", "subscription"):
            inv.pop(key, None)
        inv["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub_id, "metadata": {}},
        }
    else:
        inv["subscription"] = sub_id
        inv["charge"] = ch["id"]
        pi["invoice"] = inv_id
        ch["invoice"] = inv_id
    return {"invoice": inv, "payment_intent": pi, "charge": ch}


_FAILED = {
    "invoice": "invoice.payment_failed",
    "payment_intent": "payment_intent.payment_failed",
    "charge": "charge.failed",
}
_ORDERS = [
    ("invoice", "payment_intent", "charge"),
    ("payment_intent", "invoice", "charge"),
    ("charge", "payment_intent", "invoice"),
    ("payment_intent", "charge", "invoice"),
]


class TestEveryApiVersionLinksOnePayment:
    @pytest.mark.parametrize("version", [OLD_VERSION, BASIL])
    @pytest.mark.parametrize("order", _ORDERS, ids=["-".join(o) for o in _ORDERS])
    def test_three_failure_events_open_one_attempt(
        self,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        version: str,
        order: tuple[str, ...],
    ) -> None:
        # Given one failed invoice payment, in the shapes of an account's API version
        objects = _payment(version)
        stripe_server.add_invoice(
            {**objects["invoice"], "status": "open"},
            payment_intent=objects["payment_intent"]["id"],
        )
        # When its three failure events arrive in this order
        outcomes = [
            stripe_org.outcome(_versioned(_FAILED[kind], objects[kind], version)) for kind in order
        ]
        # Then one attempt is open for the invoice, which every later event found
        assert outcomes == ["attempt_opened", "attempt_exists", "attempt_exists"]
        [attempt] = _attempts(db)
        transaction = db.get(Transaction, attempt.transaction_id)
        assert transaction is not None
        assert transaction.external_ref == objects["invoice"]["id"]
        assert transaction.psp_invoice_id == objects["invoice"]["id"]
        assert transaction.psp_payment_id == objects["payment_intent"]["id"]
        # And Stripe was asked at most once (never when the events name each other)
        asked = len(stripe_server.requests_to("/v1/invoice_payments"))
        assert asked == (1 if version == BASIL else 0)

    def test_a_basil_success_completes_the_attempt_its_failure_opened(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        objects = _payment(BASIL)
        stripe_server.add_invoice(
            objects["invoice"], payment_intent=objects["payment_intent"]["id"]
        )
        stripe_org.outcome(
            _versioned("payment_intent.payment_failed", objects["payment_intent"], BASIL),
        )
        # When Stripe's retry succeeds and only an invoice payment names both sides
        paid = {
            "id": new_id("inpay"),
            "object": "invoice_payment",
            "invoice": objects["invoice"]["id"],
            "is_default": True,
            "payment": {
                "type": "payment_intent",
                "payment_intent": objects["payment_intent"]["id"],
            },
            "status": "paid",
        }
        assert stripe_org.outcome(_versioned("invoice_payment.paid", paid, BASIL)) == (
            "attempt_completed"
        )
        assert _attempts(db)[0].status == "completed"

    def test_a_standalone_payment_intent_is_recovered_when_stripe_knows_no_invoice(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        pi = payment_intent()
        assert stripe_org.outcome(_versioned("payment_intent.payment_failed", pi, BASIL)) == (
            "attempt_opened"
        )
        [attempt] = _attempts(db)
        assert db.get(Transaction, attempt.transaction_id).external_ref == pi["id"]  # type: ignore[union-attr]

    def test_stripe_unreachable_leaves_the_next_event_to_link(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given Stripe refusing the key while the first (basil) event arrives
        objects = _payment(BASIL)
        stripe_server.add_invoice(
            objects["invoice"], payment_intent=objects["payment_intent"]["id"]
        )
        real_key = stripe_server.secret_key
        stripe_server.secret_key = "sk_test_rotatedAwayXXXXXXXX"
        assert (
            stripe_org.outcome(_versioned("invoice.payment_failed", objects["invoice"], BASIL))
            == "attempt_opened"
        )
        # When Stripe answers again for the payment intent's event
        stripe_server.secret_key = real_key
        outcome = stripe_org.outcome(
            _versioned("payment_intent.payment_failed", objects["payment_intent"], BASIL),
        )
        # Then that event links to the invoice's attempt instead of opening a second one
        assert outcome == "attempt_exists"
        assert len(_attempts(db)) == 1


# -- everything that ends a debt --------------------------------------------------------------


def _debt_end(event_type: str, objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    inv, pi = objects["invoice"], objects["payment_intent"]
    subscription = inv.get("subscription") or inv["parent"]["subscription_details"]["subscription"]
    if event_type.startswith("invoice."):
        status = {"invoice.voided": "void", "invoice.marked_uncollectible": "uncollectible"}
        return {**inv, "status": status.get(event_type, "draft")}
    if event_type == "payment_intent.canceled":
        return {**pi, "status": "canceled", "cancellation_reason": "void_invoice"}
    if event_type == "customer.subscription.deleted":
        return {
            "id": subscription,
            "object": "subscription",
            "customer": inv["customer"],
            "status": "canceled",
            "latest_invoice": inv["id"],
        }
    assert event_type == "customer.deleted"
    return {"id": inv["customer"], "object": "customer", "deleted": True}


class TestEverythingThatEndsADebtStopsReminders:
    @pytest.mark.parametrize("version", [OLD_VERSION, BASIL])
    @pytest.mark.parametrize("event_type", list(DEBT_ENDED_EVENTS))
    def test_the_attempt_is_cancelled_with_the_reason(
        self,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        event_type: str,
        version: str,
    ) -> None:
        # Given an open attempt for a failed invoice payment
        objects = _payment(version)
        stripe_server.add_invoice(
            objects["invoice"], payment_intent=objects["payment_intent"]["id"]
        )
        for kind in ("invoice", "payment_intent"):
            stripe_org.outcome(_versioned(_FAILED[kind], objects[kind], version))
        # When Stripe reports that the debt ended
        outcome = stripe_org.outcome(
            _versioned(event_type, _debt_end(event_type, objects), version)
        )
        # Then the attempt is cancelled, with a reason the merchant understands
        assert outcome == "attempt_cancelled"
        [attempt] = _attempts(db)
        assert (attempt.status, attempt.next_retry_at) == ("cancelled", None)
        assert attempt.cancel_reason == DEBT_ENDED_EVENTS[event_type]
        # And the API and the timeline show it
        shown = stripe_org.client.get(
            f"/v1/attempts/{attempt.id}", headers=stripe_org.account.headers
        )
        assert shown.json()["cancel_reason"] == DEBT_ENDED_EVENTS[event_type]
        [cancelled] = [e for e in build_timeline(attempt, None, []) if e.kind == "cancelled"]
        assert cancelled.detail == DEBT_ENDED_EVENTS[event_type]

    @pytest.mark.parametrize("event_type", list(DEBT_ENDED_EVENTS))
    def test_a_failure_delivered_after_the_debt_ended_opens_nothing(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session, event_type: str
    ) -> None:
        objects = _payment(OLD_VERSION)
        ended = stripe_org.outcome(event(event_type, _debt_end(event_type, objects)))
        assert ended == "no_matching_attempt"
        late = stripe_org.outcome(event("invoice.payment_failed", objects["invoice"]))
        assert late == "debt_ended"
        assert _attempts(db) == []

    def test_a_void_invoice_reported_as_failed_opens_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        void = {**invoice(), "status": "void"}
        assert stripe_org.outcome(event("invoice.payment_failed", void)) == "debt_ended"
        assert _attempts(db) == []

    def test_our_own_checkouts_payment_cancelled_leaves_the_attempt_open(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Given an open attempt for a failed payment
        pi = payment_intent()
        stripe_org.outcome(event("payment_intent.payment_failed", pi))
        [attempt] = _attempts(db)
        # When the payment intent of our own Checkout Session is canceled (session expired)
        ours = payment_intent(
            status="canceled",
            metadata={
                "stealth_recovery_attempt_id": str(attempt.id),
                "stealth_recovery_organization_id": str(stripe_org.organization_id),
            },
        )
        assert stripe_org.outcome(event("payment_intent.canceled", ours)) == ("own_checkout_event")
        # Then the customer's debt is still being recovered
        assert _attempts(db)[0].status == "created"

    def test_a_deleted_customer_stops_every_attempt_of_that_customer_only(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        mine = [payment_intent(customer="cus_gone"), payment_intent(customer="cus_gone")]
        other = payment_intent(customer="cus_stays", email="other@example.com")
        for pi in [*mine, other]:
            stripe_org.outcome(event("payment_intent.payment_failed", pi))
        deleted = {"id": "cus_gone", "object": "customer", "deleted": True}
        assert stripe_org.outcome(event("customer.deleted", deleted)) == "attempt_cancelled"
        statuses = sorted(a.status for a in _attempts(db))
        assert statuses == ["cancelled", "cancelled", "created"]


class TestTheSubscribeList:
    def test_the_connection_answer_and_the_readme_name_every_handled_event(
        self, stripe_org: StripeOrg
    ) -> None:
        answer = stripe_org.client.get(
            "/v1/integrations/stripe", headers=stripe_org.account.headers
        ).json()
        assert answer["enabled_events"] == list(HANDLED_EVENTS)
        readme = README.read_text()
        missing = [t for t in HANDLED_EVENTS if not re.search(rf"`{re.escape(t)}`", readme)]
        assert missing == []

    @pytest.mark.parametrize("event_type", HANDLED_EVENTS)
    def test_every_listed_event_is_acted_on(self, stripe_org: StripeOrg, event_type: str) -> None:
        objects = _payment(OLD_VERSION)
        if event_type in FAILURE_EVENTS:
            kind = event_type.split(".")[0]
            body = event(event_type, objects[kind])
        elif event_type in SUCCESS_EVENTS:
            obj: dict[str, Any] = {
                "invoice": objects["invoice"],
                "invoice_payment": {
                    "id": new_id("inpay"),
                    "object": "invoice_payment",
                    "invoice": objects["invoice"]["id"],
                    "payment": {},
                },
                "payment_intent": objects["payment_intent"],
                "checkout": {
                    "id": new_id("cs"),
                    "object": "checkout.session",
                    "payment_status": "paid",
                    "metadata": {},
                },
            }[event_type.split(".")[0]]
            body = event(event_type, obj)
        else:
            body = event(event_type, _debt_end(event_type, objects))
        assert stripe_org.outcome(body) != "ignored"
        assert event_type in FAILURE_EVENTS + SUCCESS_EVENTS + tuple(DEBT_ENDED_EVENTS)


# -- a hard decline sticks to its payment -----------------------------------------------------


class TestAHardDeclineSticks:
    @pytest.mark.parametrize("version", [OLD_VERSION, BASIL])
    @pytest.mark.parametrize("order", _ORDERS, ids=["-".join(o) for o in _ORDERS])
    def test_no_later_event_in_any_order_reopens_a_chase(
        self,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        version: str,
        order: tuple[str, ...],
    ) -> None:
        # Given one payment whose payment intent and charge report a stolen card
        objects = _payment(version, decline_code="stolen_card")
        stripe_server.add_invoice(
            objects["invoice"], payment_intent=objects["payment_intent"]["id"]
        )
        # When its events arrive in any order, and Stripe's retry reports the invoice again
        for kind in order:
            stripe_org.outcome(_versioned(_FAILED[kind], objects[kind], version))
        retried = {**objects["invoice"], "attempt_count": 2}
        stripe_org.outcome(_versioned("invoice.payment_failed", retried, version))
        # Then nothing is open: whatever came first, the stolen card stopped the chase
        attempts = _attempts(db)
        assert [a.status for a in attempts] == ["cancelled"]
        assert attempts[0].cancel_reason == "hard decline: stolen_card"

    @pytest.mark.parametrize("ref", ["invoice", "payment_intent"])
    def test_a_report_through_the_api_does_not_reopen_it_either(
        self, client: TestClient, stripe_org: StripeOrg, db: Session, ref: str
    ) -> None:
        objects = _payment(OLD_VERSION, decline_code="stolen_card")
        stripe_org.outcome(event("payment_intent.payment_failed", objects["payment_intent"]))
        # When the merchant's server reports the same payment, soft, by one of its ids
        body: dict[str, Any] = {
            "transaction_ref": objects[ref]["id"] if ref == "invoice" else "order-77",
            "amount_minor": 2000,
            "currency": "USD",
            "customer_email": "jane@example.com",
            "decline_code": "insufficient_funds",
            "occurred_at": "2026-11-30T12:00:00Z",
        }
        if ref == "payment_intent":
            body["psp_payment_id"] = objects["payment_intent"]["id"]
        response = client.post(
            "/v1/events/payment_failed",
            json=body,
            headers=api_key_headers(db, stripe_org.account.organization),
        )
        # Then it answers with the hard-declined attempt and opens nothing
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert [a.status for a in _attempts(db)] == ["cancelled"]
