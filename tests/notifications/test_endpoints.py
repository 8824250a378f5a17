"""Delivery-status webhooks over HTTP: signatures, status moves, acknowledgements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.models import HeldDeliveryStatus, NotificationStatus
from tests.support.builders import make_log
from tests.support.providers import meta_signature, twilio_signature, whatsapp_status_payload

BASE_URL = "https://recovery.example.test"
TWILIO_TOKEN = "twilio-auth-token-for-callbacks"
APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "meta-verify-token"
SID = "SM" + "b" * 32
WAMID = "wamid.HBgLMzQ2MTIzNDU2NzgVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
TWILIO_PATH = "/v1/webhooks/twilio/status"


@pytest.fixture(autouse=True)
def callback_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BASE_URL", BASE_URL)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv("WHATSAPP_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
    get_settings.cache_clear()
    yield


def _twilio_form(status: str, **extra: str) -> dict[str, str]:
    """The fields Twilio posts to a StatusCallback."""
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": SID,
        "MessageStatus": status,
        "SmsSid": SID,
        "SmsStatus": status,
        "To": "+34612345678",
        **extra,
    }


def _post_twilio(
    client: TestClient, form: dict[str, str], signature: str | None = None
) -> tuple[int, object]:
    signed = twilio_signature(BASE_URL + TWILIO_PATH, form, TWILIO_TOKEN)
    headers = {"X-Twilio-Signature": signature if signature is not None else signed}
    response = client.post(TWILIO_PATH, data=form, headers=headers)
    return response.status_code, response.json()


def _whatsapp_body(*statuses: dict[str, object]) -> bytes:
    return json.dumps(whatsapp_status_payload(*statuses)).encode()


def _post_whatsapp(
    client: TestClient, body: bytes, signature: str | None = None
) -> tuple[int, object]:
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature or meta_signature(body, APP_SECRET),
    }
    response = client.post("/v1/webhooks/whatsapp", content=body, headers=headers)
    return response.status_code, response.json()


class TestTwilioStatus:
    def test_delivered_flips_sent_to_delivered(self, client: TestClient, db: Session) -> None:
        # Given an SMS the engine logged as sent
        log = make_log(db, provider_message_id=SID)

        # When Twilio's signed callback says delivered
        status, body = _post_twilio(client, _twilio_form("delivered"))

        # Then it is acknowledged and the row is delivered
        db.refresh(log)
        assert (status, body) == (200, {"results": ["updated"]})
        assert log.status == NotificationStatus.delivered
        assert log.delivered_at is not None

    def test_undelivered_to_an_unknown_handset_bounces(
        self, client: TestClient, db: Session
    ) -> None:
        log = make_log(db, provider_message_id=SID)

        status, _ = _post_twilio(client, _twilio_form("undelivered", ErrorCode="30005"))

        db.refresh(log)
        assert status == 200
        assert log.status == NotificationStatus.bounced
        assert log.failed_at is not None
        assert log.error_message == "Twilio undelivered: error 30005 (unknown destination handset)"

    def test_a_forged_callback_is_refused_and_changes_nothing(
        self, client: TestClient, db: Session
    ) -> None:
        # Given a sent SMS
        log = make_log(db, provider_message_id=SID)
        form = _twilio_form("failed", ErrorCode="30008")
        forged = twilio_signature(BASE_URL + TWILIO_PATH, form, "someone-elses-token")

        # When callbacks arrive with a wrong signature, and with none
        forged_status, forged_body = _post_twilio(client, form, signature=forged)
        unsigned = client.post(TWILIO_PATH, data=form)

        # Then both are 403 and the row is still sent
        db.refresh(log)
        assert forged_status == 403
        assert forged_body == {
            "detail": "invalid X-Twilio-Signature",
            "type": "invalid_callback_signature",
        }
        assert unsigned.status_code == 403
        assert log.status == NotificationStatus.sent

    def test_a_tampered_field_breaks_the_signature(self, client: TestClient, db: Session) -> None:
        log = make_log(db, provider_message_id=SID)
        signed_for = _twilio_form("delivered")
        sent = {**signed_for, "MessageStatus": "failed", "SmsStatus": "failed"}

        signature = twilio_signature(BASE_URL + TWILIO_PATH, signed_for, TWILIO_TOKEN)
        status, _ = _post_twilio(client, sent, signature=signature)

        db.refresh(log)
        assert status == 403
        assert log.status == NotificationStatus.sent

    def test_unknown_messages_are_acknowledged_and_held(
        self, client: TestClient, db: Session
    ) -> None:
        status, body = _post_twilio(client, _twilio_form("delivered"))
        queued, _ = _post_twilio(client, _twilio_form("queued"))

        assert (status, body) == (200, {"results": ["held"]})
        assert queued == 200
        held = db.scalars(select(HeldDeliveryStatus)).all()
        assert [(h.provider_message_id, h.status) for h in held] == [(SID, "delivered")]

    def test_a_late_sent_after_delivered_changes_nothing(
        self, client: TestClient, db: Session
    ) -> None:
        # Given a delivered SMS
        log = make_log(db, provider_message_id=SID)
        _post_twilio(client, _twilio_form("delivered"))
        db.refresh(log)
        delivered_at = log.delivered_at

        # When late "sent" and "undelivered" callbacks and a repeat arrive
        results = [
            _post_twilio(client, _twilio_form(s, **extra))[1]
            for s, extra in [
                ("sent", {}),
                ("undelivered", {"ErrorCode": "30003"}),
                ("delivered", {}),
            ]
        ]

        # Then the row stays delivered, at the first time
        db.refresh(log)
        assert results == [
            {"results": ["ignored"]},
            {"results": ["unchanged"]},
            {"results": ["unchanged"]},
        ]
        assert log.status == NotificationStatus.delivered
        assert log.delivered_at == delivered_at
        assert log.error_message is None


class TestWhatsAppVerification:
    def test_echoes_the_challenge(self, client: TestClient) -> None:
        response = client.get(
            "/v1/webhooks/whatsapp",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )

        assert response.status_code == 200
        assert response.text == "1158201444"

    def test_a_wrong_token_is_refused(self, client: TestClient) -> None:
        response = client.get(
            "/v1/webhooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        )

        assert response.status_code == 403
        assert response.json() == {
            "detail": "webhook verification failed",
            "type": "subscription_not_verified",
        }


class TestWhatsAppStatuses:
    def test_delivered_then_read(self, client: TestClient, db: Session) -> None:
        # Given a WhatsApp message logged as sent
        log = make_log(db, channel="whatsapp", provider="whatsapp", provider_message_id=WAMID)

        # When Meta reports delivered, then read, in one signed webhook
        status, body = _post_whatsapp(
            client,
            _whatsapp_body(
                {"id": WAMID, "status": "delivered", "timestamp": "1764600060"},
                {"id": WAMID, "status": "read", "timestamp": "1764600120"},
            ),
        )

        # Then the row is delivered at the provider's time
        db.refresh(log)
        assert (status, body) == (200, {"results": ["updated", "unchanged"]})
        assert log.status == NotificationStatus.delivered
        assert log.delivered_at == datetime.fromtimestamp(1764600060, tz=UTC)

    def test_failed_with_the_provider_error(self, client: TestClient, db: Session) -> None:
        log = make_log(db, channel="whatsapp", provider="whatsapp", provider_message_id=WAMID)

        _post_whatsapp(
            client,
            _whatsapp_body(
                {
                    "id": WAMID,
                    "status": "failed",
                    "timestamp": "1764600060",
                    "errors": [{"code": 131047, "title": "Re-engagement message"}],
                }
            ),
        )

        db.refresh(log)
        assert log.status == NotificationStatus.failed
        assert log.error_message == "WhatsApp error 131047: Re-engagement message"

    def test_a_forged_webhook_is_refused(self, client: TestClient, db: Session) -> None:
        log = make_log(db, channel="whatsapp", provider="whatsapp", provider_message_id=WAMID)
        body = _whatsapp_body({"id": WAMID, "status": "delivered", "timestamp": "1764600060"})

        status, response = _post_whatsapp(
            client, body, signature=meta_signature(body, "not-the-secret")
        )

        db.refresh(log)
        assert status == 403
        assert response == {
            "detail": "invalid X-Hub-Signature-256",
            "type": "invalid_callback_signature",
        }
        assert log.status == NotificationStatus.sent

    def test_a_signed_body_that_is_not_json_is_a_422(self, client: TestClient) -> None:
        status, response = _post_whatsapp(client, b"not json")

        assert status == 422
        assert response["detail"][0]["field"] == "body"
