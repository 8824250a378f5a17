"""Checkout Sessions for pay links, against the fake Stripe server; the return page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.core.database import get_session_factory, session_scope
from stealth_recovery.core.errors import Conflict
from stealth_recovery.core.settings import get_settings
from stealth_recovery.integrations.stripe import service
from stealth_recovery.integrations.stripe.service import PaymentProviderError, checkout_url_for
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import make_account, make_attempt, reload_attempt
from tests.support.stripe_events import StripeOrg, connect
from tests.support.stripe_server import FakeStripe, ReceivedRequest


class TestCheckoutUrlFor:
    def test_creates_a_session_for_the_attempts_amount(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given an open attempt of a connected organization: Jane owes €49.00
        attempt = make_attempt(
            db,
            stripe_org.account.organization,
            email="jane@example.com",
            amount_minor=4900,
            due=False,
        )
        # When the customer goes to pay
        url = checkout_url_for(db, attempt=attempt)
        db.commit()
        # Then Stripe was asked, with the organization's key, for a one-off payment
        [request] = stripe_server.created_sessions()
        assert request.headers["authorization"] == f"Bearer {stripe_server.secret_key}"
        assert request.headers["idempotency-key"]
        params = request.params
        assert params["mode"] == "payment"
        [item] = params["line_items"]
        assert item["quantity"] == "1"
        assert item["price_data"]["currency"] == "eur"
        assert item["price_data"]["unit_amount"] == "4900"
        assert stripe_org.account.organization.name in item["price_data"]["product_data"]["name"]
        assert params["customer_email"] == "jane@example.com"
        expected_metadata = {
            "stealth_recovery_attempt_id": str(attempt.id),
            "stealth_recovery_organization_id": str(stripe_org.organization_id),
        }
        assert params["metadata"] == expected_metadata
        assert params["payment_intent_data"]["metadata"] == expected_metadata
        base = get_settings().base_url.rstrip("/")
        assert params["success_url"] == (
            f"{base}/pay/{attempt.token}/success?session_id={{CHECKOUT_SESSION_ID}}"
        )
        assert params["cancel_url"] == f"{base}/pay/{attempt.token}"
        # And the customer goes to that session, which the attempt remembers
        stored = reload_attempt(db, attempt)
        assert stored.checkout_session_id in stripe_server.sessions
        assert url == stripe_server.sessions[stored.checkout_session_id]["url"]

    def test_reuses_the_attempts_open_session(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        first = checkout_url_for(db, attempt=attempt)
        db.commit()
        second = checkout_url_for(db, attempt=reload_attempt(db, attempt))
        assert second == first
        assert len(stripe_server.created_sessions()) == 1
        assert [r.method for r in stripe_server.requests] == ["POST", "GET"]

    def test_a_retry_after_our_commit_failed_gets_the_same_session(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given a request that created a session at Stripe but whose transaction rolled back
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        with get_session_factory()() as failed:
            loaded = failed.get(RecoveryAttempt, attempt.id)
            assert loaded is not None
            first = checkout_url_for(failed, attempt=loaded)
            failed.rollback()
        assert reload_attempt(db, attempt).checkout_session_id is None
        # When the customer clicks again
        second = checkout_url_for(db, attempt=reload_attempt(db, attempt))
        # Then Stripe replays the first creation: one session, the same URL
        assert second == first
        assert len(stripe_server.created_sessions()) == 2
        assert len(stripe_server.sessions) == 1

    def test_opens_a_new_session_when_the_old_one_expired(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        first = checkout_url_for(db, attempt=attempt)
        db.commit()
        old_id = reload_attempt(db, attempt).checkout_session_id
        assert old_id is not None
        stripe_server.expire(old_id)
        second = checkout_url_for(db, attempt=reload_attempt(db, attempt))
        db.commit()
        assert second != first
        assert len(stripe_server.created_sessions()) == 2
        assert reload_attempt(db, attempt).checkout_session_id not in (None, old_id)

    def test_a_completed_session_leads_to_the_return_page_not_a_second_payment(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        checkout_url_for(db, attempt=attempt)
        db.commit()
        session_id = reload_attempt(db, attempt).checkout_session_id
        assert session_id is not None
        stripe_server.pay(session_id)
        url = checkout_url_for(db, attempt=reload_attempt(db, attempt))
        assert url.endswith(f"/pay/{attempt.token}/success?session_id={session_id}")
        assert len(stripe_server.created_sessions()) == 1

    def test_a_session_unknown_to_the_account_is_replaced(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # The merchant switched Stripe accounts: the old session id means nothing there.
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        attempt.checkout_session_id = "cs_test_from_another_account"
        db.commit()
        url = checkout_url_for(db, attempt=attempt)
        assert len(stripe_server.created_sessions()) == 1
        assert attempt.checkout_session_id != "cs_test_from_another_account"
        assert url.endswith(str(attempt.checkout_session_id))

    def test_a_key_stripe_refuses_is_a_provider_error(
        self, client: TestClient, stripe_server: FakeStripe, db: Session
    ) -> None:
        org = connect(client, db, "sk_test_" + "x" * 24)
        attempt = make_attempt(db, org.account.organization, due=False)
        with pytest.raises(PaymentProviderError) as raised:
            checkout_url_for(db, attempt=attempt)
        assert raised.value.status_code == 502
        assert "API key" in raised.value.detail
        assert attempt.checkout_session_id is None

    def test_stripe_unreachable_is_a_provider_error(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        stripe_server.stop()
        with pytest.raises(PaymentProviderError) as raised:
            checkout_url_for(db, attempt=attempt)
        assert "could not be reached" in raised.value.detail

    def test_without_a_connection_is_a_conflict(self, db: Session) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization, due=False)
        assert not service.has_connection(db, organization_id=account.organization.id)
        with pytest.raises(Conflict):
            checkout_url_for(db, attempt=attempt)

    def test_a_final_attempt_is_a_conflict(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        with pytest.raises(Conflict):
            checkout_url_for(db, attempt=attempt)
        assert stripe_server.requests == []


class TestPayButton:
    def test_the_pay_button_redirects_to_checkout(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        response = stripe_org.client.post(f"/pay/{attempt.token}/pay", follow_redirects=False)
        assert response.status_code == 303
        stored = reload_attempt(db, attempt)
        assert stored.checkout_session_id is not None
        assert (
            response.headers["location"]
            == stripe_server.sessions[stored.checkout_session_id]["url"]
        )
        # Leaving for Checkout does not complete anything
        assert stored.status != "completed"

    def test_other_writers_go_on_while_stripe_opens_the_checkout(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given two customers of one merchant; the second pays by API while the first's pay
        # button is waiting for Stripe to open a Checkout Session
        first = make_attempt(db, stripe_org.account.organization, due=False)
        second = make_attempt(db, stripe_org.account.organization, due=False)
        written: list[str] = []

        def another_writer(request: ReceivedRequest) -> None:
            if request.method == "POST" and request.path == "/v1/checkout/sessions":
                with session_scope() as other:
                    paid = other.get(RecoveryAttempt, second.id)
                    assert paid is not None
                    recovery_service.complete_attempt(other, attempt=paid, paid_via="api")
                written.append("second completed")

        stripe_server.while_answering = another_writer
        # When the first customer presses the pay button
        response = stripe_org.client.post(f"/pay/{first.token}/pay", follow_redirects=False)
        # Then the other write went through meanwhile, and the customer went on to Checkout
        assert written == ["second completed"]
        assert reload_attempt(db, second).status == "completed"
        assert response.status_code == 303
        assert reload_attempt(db, first).checkout_session_id is not None

    @pytest.mark.parametrize(("currency", "amount_minor"), [("KWD", 5124), ("MGA", 150050)])
    def test_an_amount_stripe_cannot_charge_says_it_cannot_be_paid_online(
        self,
        stripe_org: StripeOrg,
        stripe_server: FakeStripe,
        db: Session,
        currency: str,
        amount_minor: int,
    ) -> None:
        # Given a debt in an amount Stripe's currency rules cannot charge exactly
        # (KWD in multiples of 10 fils, MGA in whole ariary)
        attempt = make_attempt(
            db,
            stripe_org.account.organization,
            amount_minor=amount_minor,
            currency=currency,
            due=False,
        )
        # When the customer presses pay
        response = stripe_org.client.post(f"/pay/{attempt.token}/pay", follow_redirects=False)
        # Then the page says this amount cannot be paid online, not "try again in a moment"
        assert response.status_code == 409
        assert "This amount cannot be paid online" in response.text
        assert stripe_org.account.organization.name in response.text
        assert "try again" not in response.text
        # And no Checkout was opened, and the attempt is still open for the merchant
        assert stripe_server.created_sessions() == []
        stored = reload_attempt(db, attempt)
        assert stored.is_open and stored.checkout_session_id is None


def _left_for_checkout(db: Session, stripe_org: StripeOrg) -> tuple[RecoveryAttempt, str]:
    """An attempt of €49.00 whose customer was sent to Checkout, and the Checkout Session's id."""
    attempt = make_attempt(db, stripe_org.account.organization, amount_minor=4900, due=False)
    checkout_url_for(db, attempt=attempt)
    db.commit()
    session_id = reload_attempt(db, attempt).checkout_session_id
    assert session_id is not None
    return attempt, session_id


class TestReturnPage:
    def test_says_confirming_until_stripe_reports_the_session_paid(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given a customer who left for Checkout
        attempt, session_id = _left_for_checkout(db, stripe_org)
        # When they come back before paying (or anyone opens the return URL)
        response = stripe_org.client.get(
            f"/pay/{attempt.token}/success", params={"session_id": session_id}
        )
        # Then the page says the payment is being confirmed, and nothing is completed
        assert response.status_code == 200
        assert 'data-state="pending"' in response.text
        assert response.headers["cache-control"] == "no-store"
        assert reload_attempt(db, attempt).status == "created"

    def test_completes_the_attempt_when_stripe_says_paid(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt, session_id = _left_for_checkout(db, stripe_org)
        stripe_server.pay(session_id)
        response = stripe_org.client.get(
            f"/pay/{attempt.token}/success", params={"session_id": session_id}
        )
        assert response.status_code == 200
        assert 'data-state="paid"' in response.text
        assert "€49.00" in response.text
        stored = reload_attempt(db, attempt)
        assert stored.status == "completed"
        assert stored.completed_at is not None

    def test_a_webhook_completing_the_attempt_meanwhile_leaves_the_page_paid(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given a customer who paid on Checkout and comes back to the return page
        attempt, session_id = _left_for_checkout(db, stripe_org)
        payment_intent = stripe_server.pay(session_id)["payment_intent"]

        def webhook_lands(request: ReceivedRequest) -> None:
            if request.method == "GET" and request.path.endswith(session_id):
                with get_session_factory()() as other:
                    landed = other.get(RecoveryAttempt, attempt.id)
                    assert landed is not None
                    recovery_service.record_payment(
                        other,
                        attempt=landed,
                        paid_via=recovery_service.PaidVia.checkout(payment_intent),
                    )
                    other.commit()

        # When Stripe's webhook completes the attempt while the page asks Stripe about it
        stripe_server.while_answering = webhook_lands
        response = stripe_org.client.get(
            f"/pay/{attempt.token}/success", params={"session_id": session_id}
        )
        # Then the customer reads that the payment was received, and it was recorded once
        assert response.status_code == 200
        assert 'data-state="paid"' in response.text
        stored = reload_attempt(db, attempt)
        assert stored.status == "completed"
        assert stored.paid_via == f"checkout:{payment_intent}"
        assert stored.second_payment_at is None

    def test_another_paid_session_in_the_url_proves_nothing(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        # Given two attempts, one of them paid on Checkout
        paid = make_attempt(db, stripe_org.account.organization, due=False)
        unpaid = make_attempt(db, stripe_org.account.organization, due=False)
        checkout_url_for(db, attempt=paid)
        checkout_url_for(db, attempt=unpaid)
        db.commit()
        paid_session = reload_attempt(db, paid).checkout_session_id
        assert paid_session is not None
        stripe_server.pay(paid_session)
        # When the unpaid attempt's return page is opened with the paid session's id
        response = stripe_org.client.get(
            f"/pay/{unpaid.token}/success", params={"session_id": paid_session}
        )
        # Then the unpaid attempt stays open
        assert 'data-state="pending"' in response.text
        assert reload_attempt(db, unpaid).status == "created"

    def test_without_a_checkout_session_nothing_is_completed(
        self, stripe_org: StripeOrg, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        response = stripe_org.client.get(f"/pay/{attempt.token}/success")
        assert 'data-state="pending"' in response.text
        assert reload_attempt(db, attempt).status == "created"

    def test_stripe_unreachable_says_confirming(
        self, stripe_org: StripeOrg, stripe_server: FakeStripe, db: Session
    ) -> None:
        attempt = make_attempt(db, stripe_org.account.organization, due=False)
        checkout_url_for(db, attempt=attempt)
        db.commit()
        stripe_server.stop()
        response = stripe_org.client.get(f"/pay/{attempt.token}/success")
        assert response.status_code == 200
        assert 'data-state="pending"' in response.text
        assert reload_attempt(db, attempt).status == "created"

    def test_an_unknown_link_is_404(self, client: TestClient, db: Session) -> None:
        response = client.get("/pay/" + "A" * 43 + "/success")
        assert response.status_code == 404
        assert 'data-state="unknown"' in response.text
