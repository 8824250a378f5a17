"""The customer's pay page and its pay action, as a browser without JavaScript sees them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.recovery.models import AttemptStatus
from stealth_recovery.recovery.service import cancel_attempt, complete_attempt
from tests.support.builders import make_account, make_attempt, reload_attempt


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENVIRONMENT", "production")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def test_payments(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TEST_PAYMENTS", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


class TestPayPage:
    def test_shows_merchant_amount_and_a_pay_form(
        self, client: TestClient, db: Session, test_payments: None
    ) -> None:
        # Given an open attempt of a German customer
        account = make_account(db)
        attempt = make_attempt(db, account.organization, amount_minor=4999, locale="de_DE")
        # When the customer opens the link
        response = client.get(f"/pay/{attempt.token}")
        # Then the page names the merchant, the amount in German format, and offers a form
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        assert account.organization.name in html
        assert "49,99\xa0€" in html
        assert "did not go through" in html
        assert f'<form method="post" action="http://localhost:8000/pay/{attempt.token}/pay">' in (
            html
        )
        assert 'lang="de-DE"' in html
        assert "<script" not in html

    def test_marks_the_attempt_opened_once(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        client.get(f"/pay/{attempt.token}")
        first = reload_attempt(db, attempt).opened_at
        with shifted_clock(timedelta(minutes=5)):
            client.get(f"/pay/{attempt.token}")
        stored = reload_attempt(db, attempt)
        assert stored.status == AttemptStatus.opened
        assert first is not None and stored.opened_at == first

    def test_customer_action_decline_asks_for_another_card(
        self, client: TestClient, db: Session
    ) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        attempt.decline_category = DeclineCategory.customer_action
        db.commit()
        html = client.get(f"/pay/{attempt.token}").text
        assert "card needs attention" in html

    def test_customer_data_is_escaped(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        from stealth_recovery.payments.models import Transaction

        transaction = db.get(Transaction, attempt.transaction_id)
        assert transaction is not None
        transaction.customer_name = "<script>alert(1)</script>"
        db.commit()
        html = client.get(f"/pay/{attempt.token}").text
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;" in html

    def test_unknown_link_is_a_404_page(self, client: TestClient, db: Session) -> None:
        response = client.get("/pay/" + "Z" * 43)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "does not exist" in response.text

    def test_malformed_token_is_a_404_page(self, client: TestClient, db: Session) -> None:
        response = client.get("/pay/not%20a%20token")
        assert response.status_code == 404
        assert "does not exist" in response.text

    def test_expired_link_is_a_410_page_that_says_so(self, client: TestClient, db: Session) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        with shifted_clock(timedelta(days=8)):
            response = client.get(f"/pay/{attempt.token}")
        assert response.status_code == 410
        assert "This payment link has expired" in response.text
        assert account.organization.name in response.text
        assert reload_attempt(db, attempt).opened_at is None

    def test_cancelled_link_is_a_410_page(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        cancel_attempt(db, attempt=attempt, reason="test")
        db.commit()
        response = client.get(f"/pay/{attempt.token}")
        assert response.status_code == 410
        assert "This payment link has been cancelled" in response.text
        assert "can no longer be used to pay" in response.text
        assert "expired" not in response.text

    def test_paid_link_is_a_410_page_saying_it_is_paid(
        self, client: TestClient, db: Session
    ) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        response = client.get(f"/pay/{attempt.token}")
        assert response.status_code == 410
        assert "already been made" in response.text

    def test_too_many_lookups_from_one_address_is_a_429_page(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a limit of 3 lookups a minute
        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "3")
        get_settings.cache_clear()
        try:
            attempt = make_attempt(db, make_account(db).organization)
            # When one address guesses two tokens and then opens a real one twice
            codes = [client.get("/pay/" + "Q" * 43).status_code for _ in range(2)]
            codes += [client.get(f"/pay/{attempt.token}").status_code for _ in range(2)]
            limited = client.get(f"/pay/{attempt.token}")
        finally:
            monkeypatch.delenv("TOKEN_RATE_LIMIT_PER_MINUTE")
            get_settings.cache_clear()
        # Then the fourth lookup is refused, even for a real token
        assert codes == [404, 404, 200, 429]
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "wait a minute" in limited.text

    def test_the_pay_flow_spends_one_budget_per_address(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a limit of 3 lookups a minute
        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "3")
        get_settings.cache_clear()
        try:
            attempt = make_attempt(db, make_account(db).organization)
            # When one address opens the page, asks its JSON twin, then comes back from Checkout
            codes = [
                client.get(f"/pay/{attempt.token}").status_code,
                client.get(f"/v1/recoveries/by_token/{attempt.token}").status_code,
                client.post(f"/pay/{attempt.token}/pay").status_code,
            ]
            returned = client.get(f"/pay/{attempt.token}/success")
            twin = client.get(f"/v1/recoveries/by_token/{attempt.token}")
        finally:
            monkeypatch.delenv("TOKEN_RATE_LIMIT_PER_MINUTE")
            get_settings.cache_clear()
        # Then the fourth lookup is refused, as a page on the return path and as JSON on the twin
        assert codes == [200, 200, 409]
        assert returned.status_code == 429
        assert int(returned.headers["retry-after"]) >= 1
        assert "wait a minute" in returned.text
        assert returned.headers["content-type"].startswith("text/html")
        assert twin.status_code == 429
        assert twin.json()["detail"].startswith("too many requests")
        assert twin.json()["type"] == "rate_limited"


class TestNoMoneyPath:
    """Paying without a provider is a labelled test mode, never a default."""

    @pytest.mark.parametrize("environment", ["local", "test", "production"])
    def test_by_default_no_environment_completes_a_payment_without_a_provider(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch, environment: str
    ) -> None:
        # Given a merchant without Stripe, in any environment and no TEST_PAYMENTS
        monkeypatch.setenv("ENVIRONMENT", environment)
        get_settings.cache_clear()
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        # When the customer opens the link, the page says online payment is not set up
        page = client.get(f"/pay/{attempt.token}")
        assert page.status_code == 200
        assert "Online payment is not set up" in page.text
        assert "<button" not in page.text
        # And a forged POST of the pay form changes nothing
        response = client.post(f"/pay/{attempt.token}/pay")
        assert response.status_code == 409
        assert "has not set up online payment" in response.text
        assert account.organization.name in response.text
        assert reload_attempt(db, attempt).is_open

    def test_test_payments_setting_completes_as_a_labelled_test_payment(
        self, client: TestClient, db: Session, test_payments: None
    ) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization, amount_minor=1250)
        page = client.get(f"/pay/{attempt.token}")
        assert "Test mode" in page.text and "Make a test payment of €12.50" in page.text
        response = client.post(f"/pay/{attempt.token}/pay")
        assert response.status_code == 200
        assert "Test payment recorded" in response.text
        assert "no money was moved" in response.text
        assert "€12.50" in response.text
        stored = reload_attempt(db, attempt)
        assert stored.status == AttemptStatus.completed
        assert stored.test_payment is True
        assert stored.next_retry_at is None
        # and the link now says the payment is made
        assert client.get(f"/pay/{attempt.token}").status_code == 410

    def test_a_demo_organization_pays_in_test_mode_without_the_setting(
        self, client: TestClient, db: Session
    ) -> None:
        account = make_account(db)
        account.organization.is_test = True
        db.commit()
        attempt = make_attempt(db, account.organization)
        assert client.post(f"/pay/{attempt.token}/pay").status_code == 200
        assert reload_attempt(db, attempt).test_payment is True

    def test_production_refuses_the_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from stealth_recovery.core.settings import SettingsError, load_settings

        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("TEST_PAYMENTS", "true")
        with pytest.raises(SettingsError, match="TEST_PAYMENTS"):
            load_settings()

    def test_a_test_payment_is_labelled_and_never_counted_as_recovered(
        self, client: TestClient, db: Session, test_payments: None
    ) -> None:
        from tests.support.web import web_login

        # Given one real payment (through the API) and one test payment, of different amounts
        account = make_account(db)
        real = make_attempt(db, account.organization, amount_minor=7000)
        test = make_attempt(db, account.organization, amount_minor=1250)
        assert client.post(
            f"/v1/recoveries/{real.id}/complete", headers=account.headers
        ).status_code in (200, 204)
        assert client.post(f"/pay/{test.token}/pay").status_code == 200
        # Then the API stats count only the real one, and say how many test payments there were
        stats = client.get("/v1/retry/stats", headers=account.headers).json()
        assert stats["completed_count"] == 1
        assert stats["test_payment_count"] == 1
        # And the API labels the attempt
        body = client.get(f"/v1/attempts/{test.id}", headers=account.headers).json()
        assert body["test_payment"] is True
        # And the dashboard shows recovered revenue of the real payment only, and the label
        web_login(client, account.user.email)
        overview = client.get("/dashboard").text
        assert "€70.00" in overview
        assert "€82.50" not in overview and "€12.50" not in overview
        assert "test payment" in client.get(f"/dashboard/attempts/{test.id}").text
        assert "test payment" in client.get("/dashboard/attempts").text


class TestPayAction:
    def test_expired_link_cannot_be_paid(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        with shifted_clock(timedelta(days=8)):
            response = client.post(f"/pay/{attempt.token}/pay")
        assert response.status_code == 410
        assert reload_attempt(db, attempt).status != AttemptStatus.completed

    def test_unknown_link_is_404(self, client: TestClient, db: Session) -> None:
        assert client.post("/pay/" + "Z" * 43 + "/pay").status_code == 404
