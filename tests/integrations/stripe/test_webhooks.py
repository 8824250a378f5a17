"""POST /v1/webhooks/stripe/{org_slug}: signed, recorded once, opening and closing attempts."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import get_session_factory
from stealth_recovery.integrations.stripe import webhooks
from stealth_recovery.payments.models import FailureEvent, PspEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import make_account, see_committed
from tests.support.stripe_events import (
    StripeOrg,
    charge,
    connect,
    event,
    invoice,
    new_id,
    payment_intent,
    sign,
)
from tests.support.stripe_server import FakeStripe


def _count(db: Session, model: type) -> int:
    see_committed(db)
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _only_attempt(db: Session) -> RecoveryAttempt:
    see_committed(db)
    [attempt] = db.scalars(select(RecoveryAttempt)).all()
    return attempt


def _only_transaction(db: Session) -> Transaction:
    see_committed(db)
    [transaction] = db.scalars(select(Transaction)).all()
    return transaction


def _ack(response: Any, outcome: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == outcome, response.json()


class TestSignature:
    def test_a_signed_event_of_another_type_is_recorded_and_ignored(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        body = event("customer.created", {"id": "cus_1", "object": "customer"})
        response = stripe_org.post(body)
        _ack(response, "ignored")
        assert response.json()["event_id"] == body["id"]
        row = db.scalar(select(PspEvent))
        assert row is not None
        assert (row.provider, row.event_id, row.event_type) == ("stripe", body["id"], body["type"])
        assert row.organization_id == stripe_org.organization_id
        assert row.processed_at is None

    def test_missing_signature_is_400_and_stores_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        payload = json.dumps(event("payment_intent.payment_failed", payment_intent())).encode()
        response = stripe_org.client.post(f"/v1/webhooks/stripe/{stripe_org.slug}", content=payload)
        assert response.status_code == 400
        assert response.json() == {"detail": "invalid Stripe-Signature", "type": "invalid_webhook"}
        assert _count(db, PspEvent) == 0
        assert _count(db, Transaction) == 0

    def test_wrong_secret_is_400_and_stores_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        body = event("payment_intent.payment_failed", payment_intent())
        response = stripe_org.post(body, secret="whsec_someoneElsesSecret123")
        assert response.status_code == 400
        assert _count(db, PspEvent) == 0
        assert _count(db, RecoveryAttempt) == 0

    def test_a_body_changed_after_signing_is_400(self, stripe_org: StripeOrg, db: Session) -> None:
        original = json.dumps(event("payment_intent.payment_failed", payment_intent())).encode()
        tampered = original.replace(b'"amount": 4900', b'"amount": 1')
        response = stripe_org.post(tampered, signature=sign(original, stripe_org.webhook_secret))
        assert response.status_code == 400
        assert _count(db, PspEvent) == 0

    def test_a_signature_older_than_five_minutes_is_400(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        body = event("payment_intent.payment_failed", payment_intent())
        response = stripe_org.post(body, timestamp=int(time.time()) - 301)
        assert response.status_code == 400
        assert _count(db, PspEvent) == 0

    def test_a_recent_signature_within_tolerance_is_accepted(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        body = event("customer.created", {"id": "cus_2", "object": "customer"})
        _ack(stripe_org.post(body, timestamp=int(time.time()) - 240), "ignored")

    def test_one_of_several_signatures_matching_is_enough(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Stripe sends one v1 signature per active secret while a secret is being rolled.
        payload = json.dumps(event("customer.created", {"id": "c", "object": "customer"})).encode()
        good = sign(payload, stripe_org.webhook_secret)
        t, v1 = good.split(",")
        header = f"{t},v1={'0' * 64},{v1},v0={'1' * 64}"
        _ack(stripe_org.post(payload, signature=header), "ignored")

    def test_an_event_signed_for_another_organization_is_400_for_this_slug(
        self, client: TestClient, db: Session, stripe_server: FakeStripe
    ) -> None:
        # Given two organizations, each with its own webhook secret
        ours = connect(client, db, stripe_server.secret_key)
        theirs = connect(client, db, stripe_server.secret_key)
        body = event("payment_intent.payment_failed", payment_intent())
        # When the other organization's signed event is posted to our slug
        response = ours.post(body, secret=theirs.webhook_secret)
        # Then it is refused and nothing is stored for anyone
        assert response.status_code == 400
        assert _count(db, PspEvent) == 0
        assert _count(db, RecoveryAttempt) == 0
        # While on its own slug it is accepted, for that organization only
        assert theirs.outcome(body) == "attempt_opened"
        assert _only_attempt(db).organization_id == theirs.organization_id

    def test_an_unknown_slug_answers_exactly_like_a_bad_signature(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Given one event posted with a wrong signature to a real organization
        body = event("customer.created", {"id": "cus_1", "object": "customer"})
        bad_signature = stripe_org.post(body, secret="whsec_notTheRightSecret123")
        # When the same event, correctly signed, goes to a slug that does not exist
        unknown = stripe_org.post(body, slug="no-such-org")
        # Then both answers are the same: nobody learns which organizations exist
        assert unknown.status_code == bad_signature.status_code == 400
        assert (
            unknown.json()
            == bad_signature.json()
            == {"detail": "invalid Stripe-Signature", "type": "invalid_webhook"}
        )
        assert _count(db, PspEvent) == 0

    def test_an_organization_without_stripe_answers_like_a_bad_signature(
        self, client: TestClient, db: Session
    ) -> None:
        account = make_account(db)
        payload = b"{}"
        response = client.post(
            f"/v1/webhooks/stripe/{account.organization.slug}",
            content=payload,
            headers={"Stripe-Signature": sign(payload, "whsec_anything12345")},
        )
        assert response.status_code == 400
        assert response.json() == {"detail": "invalid Stripe-Signature", "type": "invalid_webhook"}

    @pytest.mark.parametrize(
        "payload",
        [b"not json", b"[1, 2]", b'{"id": "evt_1", "type": "x"}', b"\xff\xfe"],
        ids=["not-json", "not-an-object", "no-data", "not-utf8"],
    )
    def test_a_signed_body_that_is_not_an_event_is_400(
        self, stripe_org: StripeOrg, db: Session, payload: bytes
    ) -> None:
        response = stripe_org.post(payload)
        assert response.status_code == 400
        assert _count(db, PspEvent) == 0


class TestReplay:
    def test_a_replayed_event_changes_nothing(self, stripe_org: StripeOrg, db: Session) -> None:
        # Given a failure event that opened an attempt
        body = event("payment_intent.payment_failed", payment_intent())
        assert stripe_org.outcome(body) == "attempt_opened"
        before = _only_attempt(db)
        token, updated_at = before.token, before.updated_at
        # When Stripe delivers it again
        response = stripe_org.post(body)
        # Then it is acknowledged and nothing changes
        _ack(response, "duplicate")
        assert _count(db, PspEvent) == 1
        assert _count(db, FailureEvent) == 1
        after = _only_attempt(db)
        assert (after.token, after.updated_at) == (token, updated_at)

    def test_a_replayed_success_does_not_touch_the_completed_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent()
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_opened"
        paid = event("payment_intent.succeeded", {**pi, "status": "succeeded"})
        assert stripe_org.outcome(paid) == "attempt_completed"
        completed_at = _only_attempt(db).completed_at
        assert stripe_org.outcome(paid) == "duplicate"
        assert _only_attempt(db).completed_at == completed_at

    def test_one_stripe_account_feeding_two_organizations_acts_for_both(
        self, client: TestClient, db: Session, stripe_server: FakeStripe
    ) -> None:
        # Given one Stripe account whose events reach two organizations' endpoints
        first = connect(client, db, stripe_server.secret_key)
        second = connect(client, db, stripe_server.secret_key)
        body = event("payment_intent.payment_failed", payment_intent())
        # When the same event is delivered to both, and again to each
        assert first.outcome(body) == "attempt_opened"
        assert second.outcome(body) == "attempt_opened"
        assert first.outcome(body) == "duplicate"
        assert second.outcome(body) == "duplicate"
        # Then each organization acted on it once
        see_committed(db)
        owners = sorted(a.organization_id for a in db.scalars(select(RecoveryAttempt)))
        assert owners == sorted([first.organization_id, second.organization_id])
        assert _count(db, PspEvent) == 2

    def test_concurrent_deliveries_of_one_event_act_once(
        self, stripe_org: StripeOrg, db: Session, postgres_only: None
    ) -> None:
        # Given one delivery being handled and not yet committed
        body = event("payment_intent.payment_failed", payment_intent())
        payload = json.dumps(body).encode()
        header = sign(payload, stripe_org.webhook_secret)
        factory = get_session_factory()
        first = factory()
        _, outcome = webhooks.receive(
            first, org_slug=stripe_org.slug, payload=payload, signature=header
        )
        assert outcome == webhooks.Outcome.attempt_opened
        results: list[webhooks.Outcome] = []

        def second_delivery() -> None:
            with factory() as second:
                # Waits on the unique key until the first delivery commits.
                results.append(
                    webhooks.receive(
                        second, org_slug=stripe_org.slug, payload=payload, signature=header
                    )[1]
                )
                second.commit()

        # When a second delivery of the same event runs meanwhile
        thread = threading.Thread(target=second_delivery)
        thread.start()
        first.commit()
        first.close()
        thread.join(timeout=30)
        # Then the second is a duplicate, and the event acted once
        assert results == [webhooks.Outcome.duplicate]
        assert _count(db, PspEvent) == 1
        assert _count(db, FailureEvent) == 1
        assert _count(db, RecoveryAttempt) == 1


class TestFailureEvents:
    def test_payment_intent_payment_failed_opens_an_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Given a payment intent declined for insufficient funds
        pi = payment_intent(amount=4900, currency="eur", decline_code="insufficient_funds")
        body = event("payment_intent.payment_failed", pi)
        # When Stripe reports it
        assert stripe_org.outcome(body) == "attempt_opened"
        # Then the transaction holds the customer's details from the billing details
        transaction = _only_transaction(db)
        assert transaction.organization_id == stripe_org.organization_id
        assert transaction.external_ref == pi["id"]
        assert (transaction.amount_minor, transaction.currency) == (4900, "EUR")
        assert transaction.customer_email == "jane@example.com"
        assert transaction.customer_name == "Jane Doe"
        assert transaction.psp_customer_id == "cus_test_1"
        assert transaction.psp_payment_id == pi["id"]
        # And the failure is recorded once, keyed by the payment intent
        failure = db.scalar(select(FailureEvent))
        assert failure is not None
        assert failure.idempotency_key == pi["id"]
        assert failure.gateway == "stripe"
        assert failure.decline_code == "insufficient_funds"
        assert failure.reason == "Your card was declined."
        assert failure.raw_metadata["stripe_event_id"] == body["id"]
        # And a soft decline opens an attempt on the normal schedule
        attempt = _only_attempt(db)
        assert attempt.status == "created"
        assert (attempt.decline_code, attempt.decline_category) == ("insufficient_funds", "soft")
        assert attempt.next_retry_at is not None
        assert db.scalar(select(PspEvent.processed_at)) is not None

    def test_charge_failed_opens_an_attempt_for_a_customer_action(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        ch = charge(amount=2500, currency="usd", reason="expired_card", phone="(415) 555-0123")
        assert stripe_org.outcome(event("charge.failed", ch)) == "attempt_opened"
        transaction = _only_transaction(db)
        assert transaction.external_ref == ch["id"]
        assert (transaction.amount_minor, transaction.currency) == (2500, "USD")
        assert transaction.customer_email == "sam@example.com"
        # The billing country reads the national number
        assert transaction.customer_phone == "+14155550123"
        attempt = _only_attempt(db)
        assert (attempt.decline_code, attempt.decline_category) == (
            "expired_card",
            "customer_action",
        )
        assert attempt.status == "created"

    def test_invoice_payment_failed_opens_an_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        inv = invoice(amount_due=1999, currency="gbp", email="Kim@Example.com")
        assert stripe_org.outcome(event("invoice.payment_failed", inv)) == "attempt_opened"
        transaction = _only_transaction(db)
        assert transaction.external_ref == inv["id"]
        assert (transaction.amount_minor, transaction.currency) == (1999, "GBP")
        assert transaction.customer_email == "Kim@example.com"
        assert transaction.customer_name == "Kim Lee"
        assert transaction.psp_customer_id == "cus_test_2"
        attempt = _only_attempt(db)
        assert attempt.status == "created"
        assert (attempt.decline_code, attempt.decline_category) == (None, "soft")

    def test_the_events_about_one_payment_open_one_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Given one invoice payment that Stripe reports three times: invoice, intent, charge
        pi = payment_intent(decline_code="incorrect_cvc", code="incorrect_cvc")
        inv = invoice(payment_intent_id=pi["id"])
        ch = charge(payment_intent_id=pi["id"], reason="incorrect_cvc")
        # When the three events arrive
        assert stripe_org.outcome(event("invoice.payment_failed", inv)) == "attempt_opened"
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_exists"
        assert stripe_org.outcome(event("charge.failed", ch)) == "attempt_exists"
        # Then there is one transaction (the invoice) and one attempt
        assert _only_transaction(db).external_ref == inv["id"]
        attempt = _only_attempt(db)
        # And the decline code the invoice lacked comes from its payment intent
        assert (attempt.decline_code, attempt.decline_category) == (
            "incorrect_cvc",
            "customer_action",
        )
        assert _count(db, FailureEvent) == 3

    def test_the_same_object_failing_again_is_one_failure(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent()
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_opened"
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_exists"
        assert _count(db, FailureEvent) == 1
        assert _count(db, RecoveryAttempt) == 1

    @pytest.mark.parametrize("code", ["stolen_card", "lost_card", "fraudulent", "pickup_card"])
    def test_a_hard_decline_opens_the_attempt_cancelled(
        self, stripe_org: StripeOrg, db: Session, code: str
    ) -> None:
        pi = payment_intent(decline_code=code)
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_cancelled"
        attempt = _only_attempt(db)
        assert attempt.status == "cancelled"
        assert (attempt.decline_code, attempt.decline_category) == (code, "hard")
        assert attempt.cancel_reason == f"hard decline: {code}"
        assert attempt.next_retry_at is None

    def test_a_hard_decline_reported_after_the_invoice_cancels_its_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent(decline_code="stolen_card")
        assert (
            stripe_org.outcome(event("invoice.payment_failed", invoice(payment_intent_id=pi["id"])))
            == "attempt_opened"
        )
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_cancelled"
        attempt = _only_attempt(db)
        assert attempt.status == "cancelled"
        assert attempt.cancel_reason == "hard decline: stolen_card"
        assert (attempt.decline_code, attempt.decline_category) == ("stolen_card", "hard")
        assert attempt.next_retry_at is None

    def test_a_charge_blocked_by_radar_as_highest_risk_is_hard(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        ch = charge(
            reason="highest_risk_level", failure_code="card_declined", outcome_type="blocked"
        )
        assert stripe_org.outcome(event("charge.failed", ch)) == "attempt_cancelled"
        assert _only_attempt(db).decline_category == "hard"

    def test_a_decline_on_our_own_checkout_opens_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        metadata = {
            "stealth_recovery_attempt_id": "41",
            "stealth_recovery_organization_id": str(stripe_org.organization_id),
        }
        pi = payment_intent(metadata=metadata)
        assert (
            stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "own_checkout_failure"
        )
        assert _count(db, Transaction) == 0
        assert _count(db, RecoveryAttempt) == 0
        assert _count(db, PspEvent) == 1

    def test_a_payment_we_cannot_recover_is_acknowledged_and_recorded(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # A zero amount and an unknown currency: Stripe retrying would not make it usable.
        pi = payment_intent(amount=0, currency="zzz")
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "unusable"
        assert _count(db, Transaction) == 0
        assert _count(db, FailureEvent) == 0
        assert _count(db, PspEvent) == 1

    def test_unusable_contact_details_are_dropped_not_fatal(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent(email="not an email", phone="12")
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_opened"
        transaction = _only_transaction(db)
        assert (transaction.customer_email, transaction.customer_phone) == (None, None)


class TestSuccessEvents:
    def test_invoice_paid_completes_the_invoices_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        inv = invoice()
        assert stripe_org.outcome(event("invoice.payment_failed", inv)) == "attempt_opened"
        paid = event("invoice.paid", {**inv, "paid": True, "status": "paid"})
        assert stripe_org.outcome(paid) == "attempt_completed"
        attempt = _only_attempt(db)
        assert attempt.status == "completed"
        assert attempt.completed_at is not None
        assert attempt.next_retry_at is None

    def test_payment_intent_succeeded_completes_the_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent()
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "attempt_opened"
        succeeded = payment_intent(pi_id=pi["id"], status="succeeded")
        assert (
            stripe_org.outcome(event("payment_intent.succeeded", succeeded)) == "attempt_completed"
        )
        assert _only_attempt(db).status == "completed"

    def test_a_payment_intent_of_an_invoice_completes_the_invoices_attempt(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        pi = payment_intent()
        inv = invoice(payment_intent_id=pi["id"])
        assert stripe_org.outcome(event("invoice.payment_failed", inv)) == "attempt_opened"
        succeeded = payment_intent(pi_id=pi["id"], status="succeeded")
        assert (
            stripe_org.outcome(event("payment_intent.succeeded", succeeded)) == "attempt_completed"
        )
        assert stripe_org.outcome(event("invoice.paid", {**inv, "paid": True})) == "already_final"
        assert _only_attempt(db).status == "completed"

    def test_checkout_session_completed_completes_the_attempt_it_was_made_for(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        assert (
            stripe_org.outcome(event("payment_intent.payment_failed", payment_intent()))
            == "attempt_opened"
        )
        attempt = _only_attempt(db)
        session = _checkout_session(attempt, payment_status="paid")
        assert (
            stripe_org.outcome(event("checkout.session.completed", session)) == "attempt_completed"
        )
        assert _only_attempt(db).status == "completed"

    def test_an_asynchronous_checkout_payment_completes_when_the_money_arrives(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        assert (
            stripe_org.outcome(event("payment_intent.payment_failed", payment_intent()))
            == "attempt_opened"
        )
        attempt = _only_attempt(db)
        unpaid = _checkout_session(attempt, payment_status="unpaid")
        assert stripe_org.outcome(event("checkout.session.completed", unpaid)) == "awaiting_payment"
        assert _only_attempt(db).status == "created"
        paid = {**unpaid, "payment_status": "paid"}
        assert (
            stripe_org.outcome(event("checkout.session.async_payment_succeeded", paid))
            == "attempt_completed"
        )
        assert _only_attempt(db).status == "completed"

    def test_a_payment_nobody_is_chasing_is_acknowledged(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        succeeded = payment_intent(status="succeeded")
        assert (
            stripe_org.outcome(event("payment_intent.succeeded", succeeded))
            == "no_matching_attempt"
        )
        assert _count(db, PspEvent) == 1

    def test_a_failure_delivered_after_its_payments_success_opens_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        # Given Stripe delivered the success first (the failure's delivery was retried)
        pi = payment_intent()
        succeeded = payment_intent(pi_id=pi["id"], status="succeeded")
        assert (
            stripe_org.outcome(event("payment_intent.succeeded", succeeded))
            == "no_matching_attempt"
        )
        # When the failure arrives
        assert stripe_org.outcome(event("payment_intent.payment_failed", pi)) == "already_paid"
        # Then nobody is chased for it
        assert _count(db, RecoveryAttempt) == 0
        assert _count(db, Transaction) == 0

    def test_an_invoice_failure_after_invoice_paid_opens_nothing(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        inv = invoice()
        assert (
            stripe_org.outcome(event("invoice.paid", {**inv, "paid": True}))
            == "no_matching_attempt"
        )
        assert stripe_org.outcome(event("invoice.payment_failed", inv)) == "already_paid"
        assert _count(db, RecoveryAttempt) == 0

    def test_another_organizations_success_does_not_hide_a_failure(
        self, client: TestClient, db: Session, stripe_server: FakeStripe
    ) -> None:
        pi = payment_intent()
        other = connect(client, db, stripe_server.secret_key)
        succeeded = payment_intent(pi_id=pi["id"], status="succeeded")
        assert other.outcome(event("payment_intent.succeeded", succeeded)) == "no_matching_attempt"
        ours = connect(client, db, stripe_server.secret_key)
        assert ours.outcome(event("payment_intent.payment_failed", pi)) == "attempt_opened"

    def test_metadata_naming_another_organizations_attempt_completes_nothing(
        self, client: TestClient, db: Session, stripe_server: FakeStripe
    ) -> None:
        # Given an attempt of another organization
        victim = connect(client, db, stripe_server.secret_key)
        assert (
            victim.outcome(event("payment_intent.payment_failed", payment_intent()))
            == "attempt_opened"
        )
        attempt = _only_attempt(db)
        # When this organization's Stripe sends a session whose metadata names it
        ours = connect(client, db, stripe_server.secret_key)
        forged = _checkout_session(attempt, payment_status="paid")
        forged["metadata"]["stealth_recovery_organization_id"] = str(ours.organization_id)
        assert ours.outcome(event("checkout.session.completed", forged)) == "no_matching_attempt"
        # Then the other organization's attempt is untouched
        assert _only_attempt(db).status == "created"


def _checkout_session(attempt: RecoveryAttempt, *, payment_status: str) -> dict[str, Any]:
    return {
        "id": new_id("cs_test"),
        "object": "checkout.session",
        "amount_total": 4900,
        "currency": "eur",
        "customer_details": {"email": "jane@example.com", "name": "Jane Doe"},
        "metadata": {
            "stealth_recovery_attempt_id": str(attempt.id),
            "stealth_recovery_organization_id": str(attempt.organization_id),
        },
        "mode": "payment",
        "payment_intent": new_id("pi"),
        "payment_status": payment_status,
        "status": "complete",
    }
