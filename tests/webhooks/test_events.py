"""The event catalogue, each event produced by its real path and read from the outbox: the type,
a stable id, and the object's state after the change, written in the change's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.retry.queue import cleanup_expired_attempts
from stealth_recovery.retry.runtime import run_due_now
from stealth_recovery.webhooks.models import WebhookDelivery, WebhookEvent
from tests.support.builders import Account, make_account, make_attempt, make_policy
from tests.support.smtp import SmtpSink
from tests.support.webhook_receiver import fake_dns

FAILURE = {
    "transaction_ref": "inv_7",
    "amount_minor": 2500,
    "currency": "EUR",
    "customer_email": "jane@example.com",
    "occurred_at": "2026-11-01T12:00:00Z",
}


def _subscribe(client: TestClient, account: Account, *types: str) -> int:
    response = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/in", "event_types": list(types)},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _events(db: Session, event_type: str | None = None) -> list[WebhookEvent]:
    db.rollback()
    stmt = select(WebhookEvent).order_by(WebhookEvent.id)
    if event_type is not None:
        stmt = stmt.where(WebhookEvent.type == event_type)
    return list(db.scalars(stmt))


def _attempt_state(event: WebhookEvent) -> dict[str, Any]:
    return dict(event.payload["attempt"])  # type: ignore[call-overload]


class TestAttemptEvents:
    def test_opened_then_cancelled_with_its_reason(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given an endpoint for every event type (public address: DNS not needed for saving IPs)
        fake_dns(monkeypatch, {"hooks.example.com": "93.184.216.34"})
        account = make_account(db)
        _subscribe(client, account)
        # When a failed payment opens an attempt and an operator cancels it
        attempt = client.post("/v1/events/payment_failed", json=FAILURE, headers=account.headers)
        attempt_id = attempt.json()["id"]
        client.post(
            f"/v1/attempts/{attempt_id}/cancel",
            json={"reason": "customer paid by bank transfer"},
            headers=account.headers,
        )
        # and a second cancel is refused
        again = client.post(f"/v1/attempts/{attempt_id}/cancel", json={}, headers=account.headers)
        assert again.status_code == 409
        # Then two events exist, each with the state after its change; the refusal wrote none
        opened, cancelled = _events(db)
        assert opened.type == "attempt.opened"
        assert _attempt_state(opened)["status"] == "created"
        assert cancelled.type == "attempt.cancelled"
        assert cancelled.payload["reason"] == "customer paid by bank transfer"
        assert _attempt_state(cancelled)["status"] == "cancelled"
        assert _attempt_state(cancelled)["cancel_reason"] == "customer paid by bank transfer"
        assert opened.public_id != cancelled.public_id
        assert all(e.public_id.startswith("evt_") for e in (opened, cancelled))
        # and each has one pending delivery to the endpoint
        db.rollback()
        assert len(db.scalars(select(WebhookDelivery)).all()) == 2

    def test_a_hard_decline_opens_cancelled(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake_dns(monkeypatch, {"hooks.example.com": "93.184.216.34"})
        account = make_account(db)
        _subscribe(client, account, "attempt.cancelled")
        client.post(
            "/v1/events/payment_failed",
            json={**FAILURE, "decline_code": "stolen_card"},
            headers=account.headers,
        )
        # Only the subscribed type is stored
        [cancelled] = _events(db)
        assert cancelled.type == "attempt.cancelled"
        assert cancelled.payload["reason"] == "hard decline: stolen_card"

    def test_pay_link_opened_and_recovered(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake_dns(monkeypatch, {"hooks.example.com": "93.184.216.34"})
        account = make_account(db)
        _subscribe(client, account, "attempt.pay_link_opened", "attempt.recovered")
        attempt = make_attempt(db, account.organization)
        # When the customer opens the link (twice) and the merchant marks the attempt paid
        assert client.get(f"/pay/{attempt.token}").status_code == 200
        assert client.get(f"/pay/{attempt.token}").status_code == 200
        client.post(f"/v1/recoveries/{attempt.id}/complete", headers=account.headers)
        # Then the first opening and the recovery are events
        opened, recovered = _events(db)
        assert opened.type == "attempt.pay_link_opened"
        assert _attempt_state(opened)["status"] == "opened"
        assert recovered.type == "attempt.recovered"
        assert _attempt_state(recovered)["status"] == "completed"
        assert _attempt_state(recovered)["paid_via"] == "api"

    def test_recovered_after_the_reminders_ended(self, db: Session, client: TestClient) -> None:
        account = make_account(db)
        _subscribe_without_dns(db, account)
        attempt = make_attempt(db, account.organization)
        # Given an attempt cancelled as exhausted
        with session_scope() as session:
            row = session.get(RecoveryAttempt, attempt.id)
            assert row is not None
            recovery_service.stop_attempt(session, attempt=row, reason="retries exhausted")
        # When money comes in for it (a provider's payment)
        with session_scope() as session:
            row = session.get(RecoveryAttempt, attempt.id)
            assert row is not None
            recovery_service.record_payment(session, attempt=row, paid_via="debt")
        # Then it is recovered after the end
        opened, cancelled, late = _events(db)
        assert opened.type == "attempt.opened"
        assert cancelled.payload["reason"] == "retries exhausted"
        assert late.type == "attempt.recovered_after_end"
        assert _attempt_state(late)["status"] == "completed"
        assert _attempt_state(late)["paid_after_end"] is True

    def test_expired_by_the_cleanup(self, db: Session) -> None:
        account = make_account(db)
        _subscribe_without_dns(db, account)
        attempt = make_attempt(db, account.organization, due=False)
        with session_scope() as session:
            assert cleanup_expired_attempts(session, now=utc_now() + timedelta(days=8)) == 1
        [expired] = _events(db, "attempt.expired")
        assert _attempt_state(expired)["id"] == attempt.id
        assert _attempt_state(expired)["status"] == "expired"

    def test_no_endpoint_no_event(self, client: TestClient, db: Session) -> None:
        account = make_account(db)
        client.post("/v1/events/payment_failed", json=FAILURE, headers=account.headers)
        assert _events(db) == []


class TestMessageEvents:
    def test_reminder_sent_and_message_bounced(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given two due attempts, one to an address the mail server refuses
        account = make_account(db)
        _subscribe_without_dns(db, account)
        make_policy(db, account.organization, enabled_channels=["email"])
        good = make_attempt(db, account.organization, email="ok@example.com")
        make_attempt(db, account.organization, email="gone@example.com")
        smtp_sink.reject("gone@example.com", 550, "5.1.1 No such user here")
        # When the queue runs
        run_due_now()
        # Then one reminder went out and one message bounced
        [sent] = _events(db, "attempt.reminder_sent")
        assert _attempt_state(sent)["id"] == good.id
        assert _attempt_state(sent)["status"] == "sent"
        assert _attempt_state(sent)["retry_count"] == 1
        assert sent.payload["reminder"] == {"retry_number": 0, "channels": ["email"]}
        [bounced] = _events(db, "message.bounced")
        message = bounced.payload["message"]
        assert message["recipient"] == "gone@example.com"  # type: ignore[index]
        assert message["status"] == "bounced"  # type: ignore[index]
        assert "5.1.1" in message["error_message"]  # type: ignore[index]


def _subscribe_without_dns(db: Session, account: Account) -> None:
    """An endpoint row for every event type (the tests above save one through the API)."""
    from stealth_recovery.core.security import encrypt_secret
    from stealth_recovery.webhooks.models import WebhookEndpoint

    db.add(
        WebhookEndpoint(
            organization_id=account.organization.id,
            url="https://hooks.example.com/in",
            event_types=[],
            secret=encrypt_secret("whsec_" + "A" * 43 + "="),
            enabled=True,
        )
    )
    db.commit()
