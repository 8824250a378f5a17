"""Delivery to a loopback receiver: signatures, retries on a moved clock, timeouts, size limits,
a worker killed mid-delivery, endpoints disabled after days of failures."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.webhooks.delivery import MAX_TRIES, RETRY_DELAYS, deliver_due
from stealth_recovery.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from stealth_recovery.webhooks.tasks import deliver_due_task
from tests.support.builders import Account, make_account
from tests.support.webhook_receiver import WebhookReceiver

FAILURE = {
    "transaction_ref": "inv_42",
    "amount_minor": 4999,
    "currency": "EUR",
    "customer_email": "jane@example.com",
    "occurred_at": "2026-11-01T12:00:00Z",
}


def _endpoint(client: TestClient, account: Account, url: str, **body: object) -> dict[str, object]:
    response = client.post(
        "/v1/webhook-endpoints", json={"url": url, **body}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _open_attempt(client: TestClient, account: Account, ref: str = "inv_42") -> dict[str, object]:
    response = client.post(
        "/v1/events/payment_failed",
        json={**FAILURE, "transaction_ref": ref},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _delivery(db: Session) -> WebhookDelivery:
    db.rollback()
    delivery = db.scalar(select(WebhookDelivery).order_by(WebhookDelivery.id))
    assert delivery is not None
    return delivery


class TestSignedDelivery:
    def test_receiver_verifies_the_signature_with_the_library(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given an endpoint (its secret shown once) and an attempt opened through the API
        account = make_account(db)
        endpoint = _endpoint(client, account, receiver.url)
        attempt = _open_attempt(client, account)
        # When a delivery pass runs
        assert deliver_due() == 1
        # Then the receiver verifies the message with the library and reads the attempt's state
        [request] = receiver.wait_for(1)
        event = Webhook(str(endpoint["secret"])).verify(request.body, request.headers)
        assert event["type"] == "attempt.opened"
        assert event["id"] == request.webhook_id
        assert event["id"].startswith("evt_")
        assert event["data"]["attempt"]["id"] == attempt["id"]
        assert event["data"]["attempt"]["status"] == "created"
        assert event["data"]["attempt"]["transaction"]["transaction_ref"] == "inv_42"
        # and a wrong secret does not verify
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)
        delivery = _delivery(db)
        assert delivery.status == DeliveryStatus.succeeded
        assert delivery.attempts == 1

    def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given an endpoint whose secret was rotated with a 24-hour overlap
        account = make_account(db)
        endpoint = _endpoint(client, account, receiver.url)
        rotated = client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"overlap_hours": 24},
            headers=account.headers,
        ).json()
        assert rotated["secret"] != endpoint["secret"]
        # When an event is delivered
        _open_attempt(client, account)
        deliver_due()
        [request] = receiver.wait_for(1)
        # Then both secrets verify it
        for secret in (endpoint["secret"], rotated["secret"]):
            Webhook(str(secret)).verify(request.body, request.headers)
        # And after a rotation without overlap, only the newest does
        newest = client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"overlap_hours": 0},
            headers=account.headers,
        ).json()
        _open_attempt(client, account, ref="inv_43")
        deliver_due()
        request = receiver.wait_for(2)[1]
        Webhook(str(newest["secret"])).verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(str(rotated["secret"])).verify(request.body, request.headers)

    def test_the_celery_task_runs_the_same_pass(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        account = make_account(db)
        _endpoint(client, account, receiver.url)
        _open_attempt(client, account)
        assert deliver_due_task.apply().get() == 1
        assert len(receiver.wait_for(1)) == 1


class TestRetries:
    def test_a_failing_receiver_sees_the_documented_schedule(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given a receiver that answers 500 to everything
        account = make_account(db)
        _endpoint(client, account, receiver.url)
        receiver.script(*([500] * MAX_TRIES))
        _open_attempt(client, account)
        # When the clock moves to each try's due time and a pass runs
        offset = timedelta(0)
        for _ in range(MAX_TRIES):
            with shifted_clock(offset):
                assert deliver_due() == 1
            delivery = _delivery(db)
            if delivery.next_attempt_at is not None:
                offset = delivery.next_attempt_at - utc_now() + timedelta(seconds=1)
        # Then the tries came at once, then after 1, 4, 16, 64, 256, 1024 minutes, 24 h, 24 h
        received = receiver.wait_for(MAX_TRIES)
        gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(received)]
        expected = [int(d.total_seconds()) for d in RETRY_DELAYS]
        assert expected == [60, 240, 960, 3840, 15360, 61440, 86400, 86400]
        assert all(e <= g <= e + 3 for g, e in zip(gaps, expected, strict=True)), gaps
        assert sum(expected) / 3600 == pytest.approx(70.75)
        # and the delivery is failed, with every try in its log, all with one event id
        delivery = _delivery(db)
        assert delivery.status == DeliveryStatus.failed
        assert delivery.attempts == MAX_TRIES
        assert len({r.webhook_id for r in received}) == 1
        tries = db.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
        assert [t.status_code for t in tries] == [500] * MAX_TRIES
        # and nothing more is sent
        with shifted_clock(timedelta(days=30)):
            assert deliver_due() == 0

    def test_a_timeout_is_retried_and_logged(
        self,
        client: TestClient,
        db: Session,
        receiver: WebhookReceiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from stealth_recovery.core.settings import get_settings

        # Given a receiver that does not answer within the timeout
        monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0.5")
        get_settings.cache_clear()
        account = make_account(db)
        _endpoint(client, account, receiver.url)
        _open_attempt(client, account)
        release = receiver.hold()
        # When a pass runs
        deliver_due()
        release.set()
        # Then the try is recorded as timed out and due again in a minute
        delivery = _delivery(db)
        assert delivery.status == DeliveryStatus.pending
        assert delivery.attempts == 1
        assert delivery.next_attempt_at is not None
        assert delivery.last_attempt_at is not None
        assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(minutes=1)
        [attempt] = db.scalars(select(WebhookAttempt)).all()
        assert attempt.error == "timed out after 0.5 s"
        assert attempt.succeeded is False

    def test_a_large_answer_is_read_up_to_the_limit(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given a receiver answering 200 with 5 MB
        account = make_account(db)
        _endpoint(client, account, receiver.url)
        receiver.answer_body = b"x" * 5_000_000
        _open_attempt(client, account)
        # When a pass runs
        deliver_due()
        # Then the delivery succeeded and only an excerpt is kept
        [attempt] = db.scalars(select(WebhookAttempt)).all()
        assert attempt.succeeded is True
        assert attempt.status_code == 200
        assert attempt.response_excerpt == "x" * 1024

    def test_an_endpoint_failing_for_days_is_disabled_with_a_notice(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given an endpoint whose every delivery fails
        account = make_account(db)
        endpoint = _endpoint(client, account, receiver.url)
        receiver.script(*([503] * 20))
        _open_attempt(client, account)
        deliver_due()
        # When another event fails three days later
        with shifted_clock(timedelta(hours=72, minutes=1)):
            _open_attempt(client, account, ref="inv_2")
            deliver_due()
            # Then the endpoint is disabled, and says why
            shown = client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}", headers=account.headers
            ).json()
        assert shown["enabled"] is False
        assert "failed for 72 hours" in shown["disabled_reason"]
        assert "HTTP 503" in shown["disabled_reason"]
        # and nothing more is sent to it
        sent = len(receiver.received)
        with shifted_clock(timedelta(days=5)):
            assert deliver_due() == 0
        assert len(receiver.received) == sent
        # until the merchant enables it again: what waited is sent
        client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"enabled": True},
            headers=account.headers,
        )
        with shifted_clock(timedelta(days=5)):
            assert deliver_due() >= 1


class TestWorkerKilledMidDelivery:
    def test_the_event_comes_again_with_the_same_id_and_is_not_lost(
        self, client: TestClient, db: Session, receiver: WebhookReceiver, database_url: str
    ) -> None:
        # Given an event waiting for an endpoint
        account = make_account(db)
        _endpoint(client, account, receiver.url)
        _open_attempt(client, account)
        # When a worker process takes it and is killed while the receiver holds the request
        release = receiver.hold()
        worker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from stealth_recovery.webhooks.delivery import deliver_due; deliver_due()",
            ],
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                "WEBHOOK_TIMEOUT_SECONDS": "30",
            },
            start_new_session=True,
        )
        try:
            [first] = receiver.wait_for(1, timeout=30)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            release.set()
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        delivery = _delivery(db)
        assert delivery.status == DeliveryStatus.pending
        assert delivery.lease_owner is not None
        # Then nothing is sent again while its lease runs
        assert deliver_due() == 0
        # and after the lease the next pass sends the same event, with the same id and body
        with shifted_clock(timedelta(seconds=61)):
            assert deliver_due() == 1
        second = receiver.wait_for(2)[1]
        assert second.webhook_id == first.webhook_id
        assert second.body == first.body
        # and the delivery is done: at least once, one event id for the receiver to act on once
        delivery = _delivery(db)
        assert delivery.status == DeliveryStatus.succeeded
        assert len({r.webhook_id for r in receiver.received}) == 1
        endpoint = db.scalar(select(WebhookEndpoint))
        assert endpoint is not None and endpoint.enabled
