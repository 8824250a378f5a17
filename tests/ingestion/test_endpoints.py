"""POST /v1/events/payment_failed over HTTP: roles, validation, idempotency, concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from threading import Barrier
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.auth.models import Role
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import api_key_headers, make_account, make_policy
from tests.support.server import running_server

BODY: dict[str, Any] = {
    "transaction_ref": "inv_1001",
    "amount_minor": 4999,
    "currency": "eur",
    "customer_email": "Jane.Doe@Example.com",
    "customer_phone": "0151 23456789",
    "customer_name": "Jane Doe",
    "customer_locale": "de-DE",
    "customer_timezone": "Europe/Berlin",
    "failure_reason": "Your card has insufficient funds.",
    "decline_code": "insufficient_funds",
    "gateway": "stripe",
    "occurred_at": "2026-11-01T12:00:00Z",
    "metadata": {"plan": "pro"},
}


def _count(db: Session, model: type) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


class TestPaymentFailed:
    def test_api_key_opens_an_attempt_with_its_pay_url(
        self, client: TestClient, db: Session
    ) -> None:
        # Given a merchant with an active policy and an API key
        admin = make_account(db)
        make_policy(db, admin.organization, max_retries=5, enabled_channels=["email", "sms"])
        headers = api_key_headers(db, admin.organization)
        # When its server reports a failed payment
        response = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        # Then an attempt opens with a pay link and the policy's schedule
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "created"
        assert body["pay_url"].startswith("http://localhost:8000/pay/")
        assert body["max_retries"] == 5
        assert body["decline_category"] == "soft"
        assert body["next_reminder"]["retry_number"] == 0
        assert body["next_reminder"]["channels"] == ["email", "sms"]
        assert body["transaction"]["transaction_ref"] == "inv_1001"
        assert body["transaction"]["currency"] == "EUR"
        # the local part as the customer wrote it, the domain lower-cased
        assert body["transaction"]["customer_email"] == "Jane.Doe@example.com"
        assert body["transaction"]["customer_phone"] == "+4915123456789"
        assert body["transaction"]["customer_locale"] == "de_DE"
        failure = db.scalar(select(FailureEvent))
        assert failure is not None
        assert failure.raw_metadata == {"plan": "pro"}
        assert failure.reason == "Your card has insufficient funds."

    @pytest.mark.parametrize("role", [Role.admin, Role.operator])
    def test_admins_and_operators_may_report(
        self, client: TestClient, db: Session, role: Role
    ) -> None:
        account = make_account(db, role=role)
        response = client.post("/v1/events/payment_failed", json=BODY, headers=account.headers)
        assert response.status_code == 201

    def test_analyst_is_refused(self, client: TestClient, db: Session) -> None:
        analyst = make_account(db, role=Role.analyst)
        response = client.post("/v1/events/payment_failed", json=BODY, headers=analyst.headers)
        assert response.status_code == 403
        assert _count(db, Transaction) == 0

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post("/v1/events/payment_failed", json=BODY).status_code == 401

    def test_same_report_twice_returns_the_same_attempt_with_200(
        self, client: TestClient, db: Session
    ) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        second = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json()["id"] == first.json()["id"]
        assert _count(db, FailureEvent) == 1

    def test_new_failure_of_an_open_transaction_returns_its_attempt(
        self, client: TestClient, db: Session
    ) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        later = {**BODY, "occurred_at": "2026-11-02T12:00:00Z", "idempotency_key": "evt_2"}
        second = client.post("/v1/events/payment_failed", json=later, headers=headers)
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]
        assert _count(db, FailureEvent) == 2
        assert _count(db, RecoveryAttempt) == 1

    def test_hard_decline_opens_a_cancelled_attempt(self, client: TestClient, db: Session) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        response = client.post(
            "/v1/events/payment_failed",
            json={**BODY, "decline_code": "stolen_card"},
            headers=headers,
        )
        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "cancelled"
        assert body["decline_category"] == "hard"
        assert body["next_reminder"] is None

    def test_minimal_report_uses_defaults(self, client: TestClient, db: Session) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        minimal = {
            "transaction_ref": "order-77",
            "amount_minor": 1250,
            "currency": "USD",
            "occurred_at": "2026-11-01T08:30:00-05:00",
        }
        response = client.post("/v1/events/payment_failed", json=minimal, headers=headers)
        assert response.status_code == 201
        transaction = response.json()["transaction"]
        assert transaction["customer_locale"] == "en"
        # No zone, phone or country in the locale: UTC
        assert transaction["customer_timezone"] == "UTC"
        assert response.json()["next_reminder"]["channels"] == []
        failure = db.scalar(select(FailureEvent))
        assert failure is not None
        assert failure.idempotency_key == "api:order-77:2026-11-01T13:30:00+00:00"

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"amount_minor": 0}, "amount_minor"),
            ({"amount_minor": -5}, "amount_minor"),
            ({"currency": "EURO"}, "currency"),
            ({"currency": "XYZ"}, "currency"),
            ({"customer_email": "jane@"}, "customer_email"),
            ({"customer_phone": "12345"}, "customer_phone"),
            ({"customer_locale": "xx_YY"}, "customer_locale"),
            ({"customer_timezone": "Mars/Olympus"}, "customer_timezone"),
            ({"occurred_at": "2026-11-01T12:00:00"}, "occurred_at"),
            ({"transaction_ref": ""}, "transaction_ref"),
            ({"transaction_ref": "   "}, "transaction_ref"),
            ({"transaction_ref": "a\u0000b"}, "transaction_ref"),
            ({"metadata": {"note": "a\u0000b"}}, "metadata"),
        ],
    )
    def test_invalid_report_is_422_naming_the_field(
        self, client: TestClient, db: Session, change: dict[str, Any], field: str
    ) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        response = client.post(
            "/v1/events/payment_failed", json={**BODY, **change}, headers=headers
        )
        assert response.status_code == 422
        assert field in {error["field"] for error in response.json()["detail"]}
        assert _count(db, Transaction) == 0

    def test_missing_fields_are_each_named(self, client: TestClient, db: Session) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        response = client.post("/v1/events/payment_failed", json={}, headers=headers)
        assert response.status_code == 422
        fields = {error["field"] for error in response.json()["detail"]}
        assert {"transaction_ref", "amount_minor", "currency", "occurred_at"} <= fields

    def test_same_reference_in_two_organizations_stays_apart(
        self, client: TestClient, db: Session
    ) -> None:
        a = api_key_headers(db, make_account(db).organization)
        b = api_key_headers(db, make_account(db).organization)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=a)
        second = client.post("/v1/events/payment_failed", json=BODY, headers=b)
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["id"] != second.json()["id"]


class TestConcurrentIngestion:
    def test_twenty_identical_requests_open_one_attempt(
        self, db: Session, postgres_only: None
    ) -> None:
        # Given a real server and a merchant's API key
        headers = api_key_headers(db, make_account(db).organization)
        barrier = Barrier(20)
        with running_server() as base_url:

            def report(_: int) -> tuple[int, int]:
                with httpx.Client(base_url=base_url, timeout=30) as http:
                    barrier.wait()
                    response = http.post("/v1/events/payment_failed", json=BODY, headers=headers)
                    return response.status_code, response.json()["id"]

            # When the same failure arrives 20 times at once
            with ThreadPoolExecutor(max_workers=20) as pool:
                results = list(pool.map(report, range(20)))
        # Then one attempt exists, one request created it, the others got it back
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * 19 + [201]
        assert len({attempt_id for _, attempt_id in results}) == 1
        assert _count(db, RecoveryAttempt) == 1
        assert _count(db, FailureEvent) == 1
        assert _count(db, Transaction) == 1


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent to the database meanwhile, as its first line (one round trip each;
    BEGIN and COMMIT are the driver's and are not among them)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2].split("\n", 1)[0])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


class TestRoundTrips:
    def test_a_new_failure_takes_at_most_five_statements(
        self, client: TestClient, db: Session, engine: Engine, postgres_only: None
    ) -> None:
        # Given a merchant's API key already used this minute (its last use is written once a
        # minute) and a policy this process has already read
        admin = make_account(db)
        make_policy(db, admin.organization, max_retries=5)
        headers = api_key_headers(db, admin.organization)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        assert first.status_code == 201
        # When a new failure of another payment arrives
        with statements_run(engine) as statements:
            response = client.post(
                "/v1/events/payment_failed",
                json={**BODY, "transaction_ref": "inv_1002"},
                headers=headers,
            )
        # Then it opens its attempt with the policy in at most five statements: the key with its
        # organization's policy stamp, the transaction's upsert, the failure's insert, the
        # attempt's insert, the webhook endpoints of the organization
        assert response.status_code == 201, response.text
        assert response.json()["max_retries"] == 5
        assert len(statements) <= 5, statements
        assert not [s for s in statements if "SAVEPOINT" in s or "retry_policies" in s]


class TestPolicyChanges:
    def test_a_policy_changed_through_another_app_applies_to_the_next_report(
        self, client: TestClient, db: Session
    ) -> None:
        # Given a merchant whose reports opened attempts under its first policy
        admin = make_account(db)
        make_policy(db, admin.organization, max_retries=5)
        headers = api_key_headers(db, admin.organization)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=headers)
        assert first.json()["max_retries"] == 5
        # When its admin replaces the policy through another process's API
        with TestClient(create_app()) as elsewhere:
            changed = elsewhere.post(
                "/v1/retry/policies",
                json={
                    "name": "Gentle",
                    "max_retries": 2,
                    "initial_delay_minutes": 120,
                    "backoff_multiplier": 1.0,
                    "max_delay_minutes": 120,
                    "enabled_channels": ["email"],
                },
                headers=admin.headers,
            )
            assert changed.status_code == 201, changed.text
        # Then the next report here opens its attempt under the new policy
        second = client.post(
            "/v1/events/payment_failed", json={**BODY, "transaction_ref": "inv_2"}, headers=headers
        )
        assert second.status_code == 201
        assert second.json()["max_retries"] == 2
        # And once the policy is deactivated, under the default (3 reminders)
        policy_id = changed.json()["id"]
        with TestClient(create_app()) as elsewhere:
            gone = elsewhere.delete(f"/v1/retry/policies/{policy_id}", headers=admin.headers)
            assert gone.status_code == 200, gone.text
        third = client.post(
            "/v1/events/payment_failed", json={**BODY, "transaction_ref": "inv_3"}, headers=headers
        )
        assert third.json()["max_retries"] == 3

    def test_a_person_reporting_gets_the_policy_changed_meanwhile(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an operator who reported under the first policy
        operator = make_account(db, role=Role.operator)
        make_policy(db, operator.organization, max_retries=5)
        first = client.post("/v1/events/payment_failed", json=BODY, headers=operator.headers)
        assert first.json()["max_retries"] == 5
        # When the policy is replaced in another unit of work
        make_policy(db, operator.organization, max_retries=1)
        # Then the operator's next report uses the new one
        second = client.post(
            "/v1/events/payment_failed",
            json={**BODY, "transaction_ref": "inv_2"},
            headers=operator.headers,
        )
        assert second.json()["max_retries"] == 1
