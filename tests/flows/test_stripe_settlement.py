"""No double charge, and no money reported as lost: a failed invoice is paid through the invoice
itself, an ended attempt's Checkout is expired at Stripe, a payment after the end is recorded,
and a second payment is flagged. Real webhooks, the fake Stripe server, the real engine."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.ingestion.service import record_failure
from stealth_recovery.integrations.stripe import service
from stealth_recovery.integrations.stripe.tasks import sweep_ended_checkouts
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.retry.runtime import run_due_now
from stealth_recovery.retry.stats import compute_stats
from tests.support.builders import (
    Account,
    failure_input,
    make_account,
    make_attempt,
    reload_attempt,
)
from tests.support.smtp import SmtpSink
from tests.support.stripe_events import (
    StripeOrg,
    charge,
    event,
    invoice,
    new_id,
    payment_intent,
)
from tests.support.stripe_server import FakeStripe
from tests.support.web import web_login


@pytest.fixture
def admin_web_for(app: FastAPI) -> Iterator[Callable[[Account], TestClient]]:
    """Browser-like clients logged in to the dashboard as a given account's admin."""
    opened: list[TestClient] = []

    def log_in(account: Account) -> TestClient:
        web = TestClient(app)
        web.__enter__()
        opened.append(web)
        web_login(web, account.user.email)
        return web

    yield log_in
    for web in opened:
        web.__exit__(None, None, None)


def _failed_invoice(org: StripeOrg, stripe: FakeStripe, db: Session) -> tuple[dict[str, Any], int]:
    inv = invoice(amount_due=4900, currency="eur", payment_intent_id=new_id("pi"))
    stripe.add_invoice(inv, payment_intent=inv["payment_intent"])
    assert org.outcome(event("invoice.payment_failed", inv)) == "attempt_opened"
    [attempt] = db.scalars(select(RecoveryAttempt)).all()
    return inv, attempt.id


def _click(client: TestClient, db: Session, attempt_id: int) -> Any:
    token = reload_attempt(db, attempt_id).token
    return client.post(f"/pay/{token}/pay", follow_redirects=False)


def _checkout_completed(attempt: RecoveryAttempt, org: StripeOrg, **extra: Any) -> dict[str, Any]:
    return {
        "id": attempt.checkout_session_id or new_id("cs_test"),
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 4900,
        "currency": "eur",
        "payment_intent": new_id("pi"),
        "metadata": {
            "stealth_recovery_attempt_id": str(attempt.id),
            "stealth_recovery_organization_id": str(org.organization_id),
        },
        **extra,
    }


class TestAFailedInvoiceIsPaidThroughTheInvoice:
    def test_the_pay_button_goes_to_the_hosted_invoice_page_and_no_checkout_is_made(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given a failed subscription invoice being recovered
        inv, attempt_id = _failed_invoice(stripe_org, stripe_server, db)
        # When the customer presses pay
        response = _click(client, db, attempt_id)
        # Then they pay the invoice itself, on Stripe's hosted invoice page
        assert response.status_code == 303
        assert (
            response.headers["location"] == stripe_server.invoices[inv["id"]]["hosted_invoice_url"]
        )
        assert stripe_server.created_sessions() == []
        # And when they pay it, Stripe settles that very invoice and tells us
        paid = stripe_server.pay_invoice(inv["id"])
        assert stripe_org.outcome(event("invoice.paid", paid)) == "attempt_completed"
        attempt = reload_attempt(db, attempt_id)
        assert (attempt.status, attempt.paid_via) == ("completed", "debt")
        # So Stripe's own retries find nothing left to collect
        assert stripe_server.invoices[inv["id"]]["amount_remaining"] == 0
        assert [p["status"] for p in stripe_server.invoice_payments] == ["paid"]

    def test_an_invoice_paid_meanwhile_completes_the_attempt_on_the_click(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        inv, attempt_id = _failed_invoice(stripe_org, stripe_server, db)
        stripe_server.pay_invoice(inv["id"])
        response = _click(client, db, attempt_id)
        assert response.status_code == 303
        assert response.headers["location"].endswith("/success")
        assert reload_attempt(db, attempt_id).status == "completed"
        assert "received" in client.get(response.headers["location"]).text

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            ("void", "invoice voided in Stripe"),
            ("uncollectible", "invoice marked uncollectible in Stripe"),
        ],
    )
    def test_an_invoice_ended_meanwhile_stops_the_attempt_on_the_click(
        self,
        client: TestClient,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        status: str,
        reason: str,
    ) -> None:
        inv, attempt_id = _failed_invoice(stripe_org, stripe_server, db)
        stripe_server.set_invoice_status(inv["id"], status)
        response = _click(client, db, attempt_id)
        assert response.status_code == 303
        attempt = reload_attempt(db, attempt_id)
        assert (attempt.status, attempt.cancel_reason) == ("cancelled", reason)
        page = client.get(response.headers["location"])
        assert page.status_code == 410
        assert "49" not in page.text and stripe_org.account.organization.name not in page.text

    def test_stripe_refusing_the_invoice_lookup_never_falls_back_to_a_second_payment(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        inv, attempt_id = _failed_invoice(stripe_org, stripe_server, db)
        del stripe_server.invoices[inv["id"]]
        response = _click(client, db, attempt_id)
        assert response.status_code == 502
        assert stripe_server.created_sessions() == []
        assert reload_attempt(db, attempt_id).status == "created"

    def test_a_payment_without_invoice_keeps_checkout(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        pi = payment_intent()
        stripe_org.outcome(event("payment_intent.payment_failed", pi))
        [attempt] = db.scalars(select(RecoveryAttempt)).all()
        response = _click(client, db, attempt.id)
        assert response.status_code == 303
        assert "/c/pay/cs_test_" in response.headers["location"]
        assert len(stripe_server.created_sessions()) == 1


def _cancel_by_operator(client: TestClient, org: StripeOrg, attempt: RecoveryAttempt) -> None:
    response = client.post(
        f"/v1/attempts/{attempt.id}/cancel",
        json={"reason": "customer paid by bank transfer"},
        headers=org.account.headers,
    )
    assert response.status_code == 200, response.text


def _exhaust(client: TestClient, org: StripeOrg, attempt: RecoveryAttempt) -> None:
    for hours in (1, 3, 7, 24, 48):
        with shifted_clock(timedelta(hours=hours, seconds=5)):
            run_due_now()


def _expire(client: TestClient, org: StripeOrg, attempt: RecoveryAttempt) -> None:
    with shifted_clock(timedelta(days=8)):
        run_due_now()


def _void(client: TestClient, org: StripeOrg, attempt: RecoveryAttempt) -> None:
    pi = {**payment_intent(pi_id=attempt_pi[attempt.id]), "status": "canceled"}
    assert org.outcome(event("payment_intent.canceled", pi)) == "attempt_cancelled"


attempt_pi: dict[int, str] = {}
_ENDINGS: dict[str, tuple[Callable[[TestClient, StripeOrg, RecoveryAttempt], None], str]] = {
    "operator-cancel": (_cancel_by_operator, "cancelled"),
    "retries-exhausted": (_exhaust, "cancelled"),
    "link-expired": (_expire, "expired"),
    "debt-ended-in-stripe": (_void, "cancelled"),
}


class TestAnEndedAttemptsCheckoutIsExpiredAtStripe:
    @pytest.mark.parametrize("ending", list(_ENDINGS))
    def test_its_open_session_can_no_longer_take_money(
        self,
        client: TestClient,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        smtp_sink: SmtpSink,
        ending: str,
    ) -> None:
        # Given an attempt whose customer opened a Checkout Session and left it open
        pi = payment_intent()
        stripe_org.outcome(event("payment_intent.payment_failed", pi))
        [attempt] = db.scalars(select(RecoveryAttempt)).all()
        attempt_pi[attempt.id] = pi["id"]
        assert _click(client, db, attempt.id).status_code == 303
        session_id = reload_attempt(db, attempt.id).checkout_session_id
        assert session_id is not None and stripe_server.sessions[session_id]["status"] == "open"
        # When the attempt ends by this route, and the periodic sweep runs
        end, status = _ENDINGS[ending]
        end(client, stripe_org, reload_attempt(db, attempt.id))
        assert reload_attempt(db, attempt.id).status == status
        sweep_ended_checkouts()
        # Then the session is expired at Stripe, once
        assert stripe_server.sessions[session_id]["status"] == "expired"
        assert reload_attempt(db, attempt.id).checkout_closed_at is not None
        assert sweep_ended_checkouts() == 0
        expiries = stripe_server.requests_to(f"/v1/checkout/sessions/{session_id}/expire")
        assert len(expiries) == 1

    def test_a_hard_decline_reported_later_expires_it_from_the_webhook(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given an attempt whose customer opened a Checkout Session and left it open
        pi = payment_intent()
        stripe_org.outcome(event("payment_intent.payment_failed", pi))
        [attempt] = db.scalars(select(RecoveryAttempt)).all()
        assert _click(client, db, attempt.id).status_code == 303
        session_id = reload_attempt(db, attempt.id).checkout_session_id
        assert session_id is not None and stripe_server.sessions[session_id]["status"] == "open"
        # When the payment's charge reports a stolen card
        ch = charge(payment_intent_id=pi["id"], reason="stolen_card")
        assert stripe_org.outcome(event("charge.failed", ch)) == "attempt_cancelled"
        # Then the webhook itself expires the session at Stripe: no sweep is needed
        assert reload_attempt(db, attempt.id).status == "cancelled"
        assert stripe_server.sessions[session_id]["status"] == "expired"
        assert reload_attempt(db, attempt.id).checkout_closed_at is not None

    def test_a_paid_session_is_not_expired_and_stripe_unreachable_is_tried_again(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        service.checkout_url_for(db, attempt=attempt)
        db.commit()
        real_key = stripe_server.secret_key
        stripe_server.secret_key = "sk_test_revokedXXXXXXXXXXXX"
        _cancel_by_operator(client, stripe_org, attempt)
        assert sweep_ended_checkouts() == 0  # Stripe refused: left for the next pass
        stripe_server.secret_key = real_key
        assert sweep_ended_checkouts() == 1
        assert (
            stripe_server.sessions[reload_attempt(db, attempt.id).checkout_session_id or ""][
                "status"
            ]
            == "expired"
        )


class TestMoneyThatComesInIsNeverLost:
    @pytest.mark.parametrize("ending", list(_ENDINGS))
    def test_a_payment_after_the_attempt_ended_completes_it_and_counts(
        self,
        client: TestClient,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        smtp_sink: SmtpSink,
        ending: str,
    ) -> None:
        # Given an attempt that ended by this route, with its Checkout not yet expired
        pi = payment_intent()
        stripe_org.outcome(event("payment_intent.payment_failed", pi))
        [attempt] = db.scalars(select(RecoveryAttempt)).all()
        attempt_pi[attempt.id] = pi["id"]
        _click(client, db, attempt.id)
        end, _status = _ENDINGS[ending]
        end(client, stripe_org, reload_attempt(db, attempt.id))
        # When the customer pays through the old session anyway
        paid = _checkout_completed(reload_attempt(db, attempt.id), stripe_org)
        outcome = stripe_org.outcome(event("checkout.session.completed", paid))
        # Then the money is recorded: completed, marked as after the end
        assert outcome == "attempt_completed_after_end"
        done = reload_attempt(db, attempt.id)
        assert (done.status, done.paid_after_end) == ("completed", True)
        assert done.completed_at is not None
        # And it shows in the API, the stats and recovered revenue
        shown = client.get(f"/v1/attempts/{attempt.id}", headers=stripe_org.account.headers)
        assert shown.json()["status"] == "completed"
        assert shown.json()["paid_after_end"] is True
        stats = compute_stats(db, organization_id=stripe_org.organization_id)
        assert (stats.completed_count, stats.recovered_after_end_count) == (1, 1)

    def test_the_return_page_records_a_session_paid_after_the_end(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        service.checkout_url_for(db, attempt=attempt)
        db.commit()
        stripe_server.pay(reload_attempt(db, attempt.id).checkout_session_id or "")
        _cancel_by_operator(client, stripe_org, attempt)
        page = client.get(f"/pay/{attempt.token}/success")
        assert page.status_code == 200
        assert "received" in page.text
        assert reload_attempt(db, attempt.id).paid_after_end is True

    def test_the_return_page_of_an_ended_unpaid_attempt_shows_nothing_about_it(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, email="zed@x.io", due=False)
        service.checkout_url_for(db, attempt=attempt)
        db.commit()
        _cancel_by_operator(client, stripe_org, attempt)
        page = client.get(f"/pay/{attempt.token}/success")
        assert page.status_code == 410
        for secret in ("49", "€", "zed", "Jane", stripe_org.account.organization.name):
            assert secret not in page.text

    def test_a_second_payment_is_flagged_not_answered_already_final(
        self, client: TestClient, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given an invoice attempt completed by a recovery Checkout payment
        inv = invoice(amount_due=4900, currency="eur", payment_intent_id=new_id("pi"))
        stripe_org.outcome(event("invoice.payment_failed", inv))
        [attempt] = db.scalars(select(RecoveryAttempt)).all()
        paid = _checkout_completed(attempt, stripe_org)
        assert stripe_org.outcome(event("checkout.session.completed", paid)) == (
            "attempt_completed"
        )
        # And the same payment reported again by its payment intent is not a second one
        ours = payment_intent(
            pi_id=paid["payment_intent"], status="succeeded", metadata=paid["metadata"]
        )
        assert stripe_org.outcome(event("payment_intent.succeeded", ours)) == "already_final"
        assert reload_attempt(db, attempt.id).second_payment_at is None
        # When Stripe's own retry then collects the invoice as well
        collected = {**inv, "status": "paid", "paid": True, "amount_remaining": 0}
        outcome = stripe_org.outcome(event("invoice.paid", collected))
        # Then the second payment is flagged on the attempt, for the merchant to refund
        assert outcome == "second_payment"
        flagged = reload_attempt(db, attempt.id)
        assert flagged.second_payment_at is not None
        assert flagged.second_payment_ref == "debt"
        shown = client.get(f"/v1/attempts/{attempt.id}", headers=stripe_org.account.headers)
        assert shown.json()["second_payment_ref"] == "debt"
        # And the invoice's other success events about the same payment flag nothing more
        again = stripe_org.outcome(event("invoice.payment_succeeded", collected))
        assert again == "second_payment"
        assert reload_attempt(db, attempt.id).second_payment_at == flagged.second_payment_at


# -- A second payment after a completion that was not Stripe's -------------------------------


def _second_payments() -> float:
    return REGISTRY.get_sample_value("stealth_recovery_second_payments_total") or 0.0


def _connect(client: TestClient, account: Account, stripe: FakeStripe) -> StripeOrg:
    webhook_secret = "whsec_" + secrets.token_urlsafe(24)
    response = client.put(
        "/v1/integrations/stripe",
        json={"secret_key": stripe.secret_key, "webhook_secret": webhook_secret},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    return StripeOrg(client, account, stripe.secret_key, webhook_secret)


@dataclass
class Debt:
    """A failed Stripe payment (its invoice and payment intent) being recovered."""

    org: StripeOrg
    attempt_id: int
    invoice_id: str
    payment_intent_id: str


def _open_debt(db: Session, account: Account) -> tuple[int, str, str]:
    invoice_id, pi_id = new_id("in"), new_id("pi")
    opened = record_failure(
        db,
        organization_id=account.organization.id,
        data=failure_input(
            external_ref=invoice_id,
            amount_minor=4900,
            customer_email="jane@example.com",
            customer_phone=None,
            customer_locale="en",
            reason=None,
            occurred_at=utc_now(),
            psp_customer_id="cus_test_2",
            psp_payment_id=pi_id,
            psp_invoice_id=invoice_id,
        ),
    )
    db.commit()
    return opened.attempt.id, invoice_id, pi_id


def _paid_through_the_api(client: TestClient, db: Session, stripe: FakeStripe) -> Debt:
    """Stripe connected; the merchant took the money elsewhere and completed it by the API."""
    account = make_account(db)
    org = _connect(client, account, stripe)
    attempt_id, invoice_id, pi_id = _open_debt(db, account)
    response = client.post(f"/v1/recoveries/{attempt_id}/complete", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    return Debt(org, attempt_id, invoice_id, pi_id)


def _paid_by_a_test_payment(client: TestClient, db: Session, stripe: FakeStripe) -> Debt:
    """The customer used the pay page's test payment before the merchant connected Stripe."""
    account = make_account(db)
    account.organization.is_test = True
    db.commit()
    attempt_id, invoice_id, pi_id = _open_debt(db, account)
    page = client.post(f"/pay/{reload_attempt(db, attempt_id).token}/pay")
    assert page.status_code == 200 and "Test payment recorded" in page.text
    return Debt(_connect(client, account, stripe), attempt_id, invoice_id, pi_id)


_FIRST_COMPLETIONS: dict[str, tuple[Callable[[TestClient, Session, FakeStripe], Debt], str]] = {
    "completed-through-the-api": (_paid_through_the_api, "api"),
    "test-payment-on-the-pay-page": (_paid_by_a_test_payment, "test_payment"),
}


def _stripe_retry_collects_the_payment_intent(debt: Debt) -> tuple[dict[str, Any], ...]:
    pi = payment_intent(pi_id=debt.payment_intent_id, status="succeeded")
    return event("payment_intent.succeeded", pi), event("payment_intent.succeeded", pi)


def _stripe_collects_the_invoice(debt: Debt) -> tuple[dict[str, Any], ...]:
    paid = invoice(
        invoice_id=debt.invoice_id,
        amount_due=4900,
        currency="eur",
        payment_intent_id=debt.payment_intent_id,
        paid=True,
    )
    return event("invoice.paid", paid), event("invoice.payment_succeeded", paid)


def _an_old_checkout_session_is_paid(debt: Debt) -> tuple[dict[str, Any], ...]:
    metadata = {
        "stealth_recovery_attempt_id": str(debt.attempt_id),
        "stealth_recovery_organization_id": str(debt.org.organization_id),
    }
    pi = new_id("pi")
    session = {
        "id": new_id("cs_test"),
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 4900,
        "currency": "eur",
        "payment_intent": pi,
        "metadata": metadata,
    }
    same = payment_intent(pi_id=pi, status="succeeded", metadata=metadata)
    return event("checkout.session.completed", session), event("payment_intent.succeeded", same)


_LATER_PAYMENTS: dict[str, tuple[Callable[[Debt], tuple[dict[str, Any], ...]], str | None]] = {
    "stripe-retry-of-the-payment-intent": (_stripe_retry_collects_the_payment_intent, "debt"),
    "stripe-collects-the-invoice": (_stripe_collects_the_invoice, "debt"),
    "an-old-checkout-session": (_an_old_checkout_session_is_paid, None),
}


class TestASecondPaymentIsFlaggedWhateverPathCompletedFirst:
    @pytest.mark.parametrize("first", list(_FIRST_COMPLETIONS))
    @pytest.mark.parametrize("later", list(_LATER_PAYMENTS))
    def test_a_later_stripe_payment_is_flagged_and_its_replays_change_nothing(
        self,
        client: TestClient,
        stripe_server: FakeStripe,
        db: Session,
        admin_web_for: Callable[[Account], TestClient],
        first: str,
        later: str,
    ) -> None:
        # Given an attempt completed by a path that is not a Stripe payment
        complete, paid_via = _FIRST_COMPLETIONS[first]
        debt = complete(client, db, stripe_server)
        done = reload_attempt(db, debt.attempt_id)
        assert (done.status, done.paid_via, done.second_payment_at) == ("completed", paid_via, None)
        counted = _second_payments()
        # When Stripe then reports a real payment for the same debt
        make_events, ref = _LATER_PAYMENTS[later]
        paid, same_payment_again = make_events(debt)
        outcome = debt.org.outcome(paid)
        # Then it is flagged as a second payment, not answered already_final
        assert outcome == "second_payment"
        flagged = reload_attempt(db, debt.attempt_id)
        expected_ref = ref or f"checkout:{paid['data']['object']['payment_intent']}"
        assert flagged.second_payment_at is not None
        assert (flagged.paid_via, flagged.second_payment_ref) == (paid_via, expected_ref)
        assert _second_payments() == counted + 1
        # And the merchant sees both payments on the attempt, in the API and the dashboard
        shown = client.get(f"/v1/attempts/{debt.attempt_id}", headers=debt.org.account.headers)
        assert shown.json()["paid_via"] == paid_via
        assert shown.json()["second_payment_ref"] == expected_ref
        assert shown.json()["second_payment_at"] is not None
        page = admin_web_for(debt.org.account).get(f"/dashboard/attempts/{debt.attempt_id}")
        timeline = page.text.split('id="timeline"')[1]
        assert "Paid a second time" in timeline and expected_ref in timeline
        # When the same payment is reported again: another event about it, then a redelivery
        again = debt.org.outcome(same_payment_again)
        redelivered = debt.org.outcome(paid)
        # Then nothing more is flagged or counted
        assert (again, redelivered) == ("second_payment", "duplicate")
        assert reload_attempt(db, debt.attempt_id).second_payment_at == flagged.second_payment_at
        assert _second_payments() == counted + 1

    def test_the_same_stripe_payment_reported_again_after_it_completed_the_attempt_is_no_op(
        self, client: TestClient, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given an attempt completed by Stripe collecting its invoice
        account = make_account(db)
        org = _connect(client, account, stripe_server)
        attempt_id, invoice_id, pi_id = _open_debt(db, account)
        debt = Debt(org, attempt_id, invoice_id, pi_id)
        paid, same_payment_again = _stripe_collects_the_invoice(debt)
        assert org.outcome(paid) == "attempt_completed"
        counted = _second_payments()
        # When Stripe reports that same payment again, by its other event and its payment intent
        by_payment_intent, _ = _stripe_retry_collects_the_payment_intent(debt)
        outcomes = [org.outcome(same_payment_again), org.outcome(by_payment_intent)]
        # Then it stays one payment: nothing is flagged or counted
        assert outcomes == ["already_final", "already_final"]
        done = reload_attempt(db, attempt_id)
        assert (done.paid_via, done.second_payment_at) == ("debt", None)
        assert _second_payments() == counted
