"""The retry engine with the real providers on all three channels, then the status callbacks.

Everything real: the database rows, the engine's queue, the SMTP server, the loopback Twilio
and Graph API server, and the webhooks through the FastAPI app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.retry.runtime import reset_runtime, run_due_now
from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.providers import FakeProviders, meta_signature, twilio_signature
from tests.support.smtp import SmtpSink
from tests.support.web import web_login

PHONE = "+34612345678"


@pytest.fixture(autouse=True)
def engine_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Quick in-step retries, and provider clients rebuilt for this test's servers."""
    monkeypatch.setenv("PROVIDER_RETRY_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("BASE_URL", "https://recovery.example.test")
    get_settings.cache_clear()
    reset_runtime()
    yield
    reset_runtime()


def _logs(db: Session, attempt_id: int) -> dict[str, NotificationLog]:
    db.expire_all()
    rows = db.scalars(select(NotificationLog).where(NotificationLog.attempt_id == attempt_id))
    return {row.channel: row for row in rows}


def _step_on_three_channels(db: Session, *, locale: str = "en") -> int:
    account = make_account(db)
    make_policy(db, account.organization, enabled_channels=["email", "sms", "whatsapp"])
    attempt = make_attempt(
        db, account.organization, email="ana@example.com", phone=PHONE, locale=locale
    )
    return attempt.id


class TestStepOnThreeChannels:
    def test_sends_three_messages_and_writes_three_sent_logs(
        self, db: Session, smtp_sink: SmtpSink, fake_providers: FakeProviders
    ) -> None:
        # Given a due attempt whose policy uses email, SMS and WhatsApp
        attempt_id = _step_on_three_channels(db, locale="es-ES")

        # When the queue runs
        assert run_due_now() == 1

        # Then each provider received one message for the customer
        [email] = smtp_sink.messages
        [sms] = fake_providers.accepted("twilio")
        [whatsapp] = fake_providers.accepted("whatsapp")
        assert email.rcpt_tos == ["ana@example.com"]
        assert email.subject.startswith("Tu pago de 49,99")
        assert sms.form["To"] == PHONE and "/pay/" in sms.form["Body"]
        assert whatsapp.json["to"] == PHONE.lstrip("+")
        assert whatsapp.json["template"]["language"] == {"code": "es"}
        # And three logs say sent, each with its provider's id
        logs = _logs(db, attempt_id)
        assert {c: (r.status, r.provider) for c, r in logs.items()} == {
            "email": ("sent", "smtp"),
            "sms": ("sent", "twilio"),
            "whatsapp": ("sent", "whatsapp"),
        }
        assert logs["email"].provider_message_id == email.queue_id != ""
        assert logs["sms"].provider_message_id == sms.message_id
        assert logs["whatsapp"].provider_message_id == whatsapp.message_id

    def test_the_smtp_queue_id_shows_in_the_api_and_the_dashboard_timeline(
        self, db: Session, client: TestClient, smtp_sink: SmtpSink
    ) -> None:
        # Given a due attempt with an email step, and a mail server answering like Exim
        account = make_account(db)
        make_policy(db, account.organization, enabled_channels=["email"])
        attempt = make_attempt(db, account.organization, email="ana@example.com")
        smtp_sink.accept_reply = "250 OK id={queue_id}"

        # When the queue runs
        assert run_due_now() == 1

        # Then the API's audit trail and the dashboard's timeline name the server's queue id
        [email] = smtp_sink.messages
        trail = client.get(
            f"/v1/retry/attempts/{attempt.id}/notifications", headers=account.headers
        ).json()
        assert [(n["provider"], n["provider_message_id"]) for n in trail] == [
            ("smtp", email.queue_id)
        ]
        client.base_url = client.base_url.copy_with(scheme="https")  # BASE_URL is https here
        web_login(client, account.user.email)
        page = client.get(f"/dashboard/attempts/{attempt.id}")
        assert page.status_code == 200
        assert f"accepted by SMTP · id {email.queue_id}" in page.text

    def test_status_callbacks_flip_sent_to_delivered(
        self,
        db: Session,
        client: TestClient,
        smtp_sink: SmtpSink,
        fake_providers: FakeProviders,
    ) -> None:
        # Given a step sent on three channels
        attempt_id = _step_on_three_channels(db)
        run_due_now()
        [sms] = fake_providers.accepted("twilio")
        [whatsapp] = fake_providers.accepted("whatsapp")

        # When Twilio calls the StatusCallback URL it was given, signed with our auth token
        form = {"MessageSid": str(sms.message_id), "MessageStatus": "delivered", "To": PHONE}
        callback_url = sms.form["StatusCallback"]
        twilio_answer = client.post(
            "/v1/webhooks/twilio/status",
            data=form,
            headers={
                "X-Twilio-Signature": twilio_signature(
                    callback_url, form, fake_providers.twilio_auth_token
                )
            },
        )
        # And Meta posts a signed "read" status for the WhatsApp message
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "statuses": [
                                        {
                                            "id": whatsapp.message_id,
                                            "status": "read",
                                            "timestamp": "1764600000",
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ).encode()
        meta_answer = client.post(
            "/v1/webhooks/whatsapp",
            content=body,
            headers={"X-Hub-Signature-256": meta_signature(body, "whatsapp-test-app-secret")},
        )

        # Then both are accepted and those two logs are delivered; email stays sent
        assert twilio_answer.status_code == 200
        assert meta_answer.status_code == 200
        logs = _logs(db, attempt_id)
        assert {c: r.status for c, r in logs.items()} == {
            "email": "sent",
            "sms": "delivered",
            "whatsapp": "delivered",
        }
        assert logs["sms"].delivered_at is not None


class TestProviderErrorsThroughTheEngine:
    def test_429_then_200_sends_one_sms(
        self, db: Session, smtp_sink: SmtpSink, fake_providers: FakeProviders
    ) -> None:
        # Given Twilio answers the first call with 429
        fake_providers.script(
            "twilio", 429, code=20429, message="Too Many Requests", headers={"Retry-After": "0"}
        )
        attempt_id = _step_on_three_channels(db)

        # When the step runs
        run_due_now()

        # Then exactly one SMS was accepted and its log is sent
        assert [r.status for r in fake_providers.requests_to("twilio")] == [429, 201]
        assert len(fake_providers.accepted("twilio")) == 1
        assert _logs(db, attempt_id)["sms"].status == "sent"

    def test_an_unsubscribed_number_bounces_the_sms_log_and_the_rest_goes_out(
        self, db: Session, smtp_sink: SmtpSink, fake_providers: FakeProviders
    ) -> None:
        # Given Twilio refuses the message permanently
        fake_providers.script(
            "twilio", 400, code=21610, message="Attempt to send to unsubscribed recipient"
        )
        attempt_id = _step_on_three_channels(db)

        # When the step runs
        run_due_now()

        # Then the SMS log bounced with Twilio's words, without a retry; the others were sent
        logs = _logs(db, attempt_id)
        assert logs["sms"].status == "bounced"
        assert logs["sms"].error_message == (
            "Twilio 400 (error 21610): Attempt to send to unsubscribed recipient"
        )
        assert logs["sms"].failed_at is not None
        assert len(fake_providers.requests_to("twilio")) == 1
        assert (logs["email"].status, logs["whatsapp"].status) == ("sent", "sent")

    def test_an_unconfigured_provider_is_logged_and_skipped(
        self,
        db: Session,
        smtp_sink: SmtpSink,
        fake_providers: FakeProviders,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Given WhatsApp without its access token
        monkeypatch.delenv("WHATSAPP_API_KEY")
        get_settings.cache_clear()
        attempt_id = _step_on_three_channels(db)

        # When the step runs
        run_due_now()

        # Then WhatsApp is failed with the reason and nothing reached the Graph API
        logs = _logs(db, attempt_id)
        assert logs["whatsapp"].status == "failed"
        assert logs["whatsapp"].error_message == "not configured: set WHATSAPP_API_KEY"
        assert fake_providers.requests_to("whatsapp") == []
        assert (logs["email"].status, logs["sms"].status) == ("sent", "sent")
