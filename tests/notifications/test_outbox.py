"""The local outbox: on the embedded local set-up, reminders are rendered in full and kept,
shown on the dashboard per channel, and never marked delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import Settings, get_settings
from stealth_recovery.notifications.models import NotificationLog, OutboxMessage
from stealth_recovery.notifications.outbox import OutboxSender, describe_routes, outbox_channels
from stealth_recovery.notifications.rendering import sms_segments
from stealth_recovery.notifications.types import MessageContext
from stealth_recovery.retry.runtime import reset_runtime, run_due_now
from tests.support.builders import make_account, make_attempt, make_policy

PHONE = "+34612345678"
ALL = {"email", "sms", "whatsapp"}
TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC0123",
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+15005550006",
}


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("REDIS_URL", "SMTP_HOST", *TWILIO, "WHATSAPP_API_KEY", "DELIVERY_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


class TestRoutes:
    def test_the_embedded_local_set_up_keeps_every_unconfigured_channel(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = _settings(monkeypatch, ENVIRONMENT="local")
        assert outbox_channels(settings) == ALL
        assert describe_routes(settings)["email"].startswith("outbox (kept, not sent")

    def test_a_configured_provider_stays_live(self, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = _settings(monkeypatch, ENVIRONMENT="local", SMTP_HOST="mail.local", **TWILIO)
        assert outbox_channels(settings) == {"whatsapp"}
        routes = describe_routes(settings)
        assert routes["email"] == "SMTP mail.local:1025" and routes["sms"] == "Twilio"

    @pytest.mark.parametrize(
        "env",
        [
            {"ENVIRONMENT": "production", "SECRET_KEY": "s" * 40},
            {"ENVIRONMENT": "test"},
            {"ENVIRONMENT": "local", "REDIS_URL": "redis://127.0.0.1:6379/0"},
            {"ENVIRONMENT": "local", "DELIVERY_MODE": "providers"},
        ],
    )
    def test_it_is_never_the_default_elsewhere(
        self, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
    ) -> None:
        settings = _settings(monkeypatch, **env)
        assert outbox_channels(settings) == frozenset()
        assert describe_routes(settings)["sms"].startswith("off (set TWILIO_")

    def test_delivery_mode_outbox_keeps_every_channel(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = _settings(monkeypatch, ENVIRONMENT="test", DELIVERY_MODE="outbox", **TWILIO)
        assert outbox_channels(settings) == ALL


class TestSmsSegments:
    @pytest.mark.parametrize(
        ("text", "segments"),
        [
            ("a" * 160, 1),
            ("a" * 161, 2),
            ("a" * 306, 2),
            ("a" * 307, 3),
            ("€" * 80, 1),  # each euro sign takes two septets
            ("€" * 81, 2),
            ("á" * 70, 1),  # not GSM-7: UCS-2
            ("á" * 71, 2),
        ],
    )
    def test_counts_as_carriers_bill(self, text: str, segments: int) -> None:
        assert sms_segments(text) == segments


@pytest.fixture
def outbox_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DELIVERY_MODE", "outbox")
    monkeypatch.setenv("BASE_URL", "https://recovery.example.test")
    get_settings.cache_clear()
    reset_runtime()
    yield
    reset_runtime()


class TestKeptMessages:
    def test_a_step_on_three_channels_is_kept_in_full_and_never_delivered(
        self, db: Session, outbox_mode: None
    ) -> None:
        # Given a due attempt whose policy uses email, SMS and WhatsApp, in outbox mode
        account = make_account(db)
        make_policy(db, account.organization, enabled_channels=["email", "sms", "whatsapp"])
        attempt = make_attempt(
            db, account.organization, email="ana@example.com", phone=PHONE, locale="es-ES"
        )
        # When the queue runs
        assert run_due_now() == 1
        # Then each message is kept, rendered as the customer would get it
        db.expire_all()
        kept = {
            m.channel: m
            for m in db.scalars(select(OutboxMessage).where(OutboxMessage.attempt_id == attempt.id))
        }
        assert set(kept) == ALL
        email, sms, whatsapp = kept["email"], kept["sms"], kept["whatsapp"]
        assert email.recipient == "ana@example.com"
        assert email.subject is not None and email.subject.startswith("Tu pago de 49,99")
        assert email.body_html is not None and f"/pay/{attempt.token}" in email.body_html
        assert f"/pay/{attempt.token}" in email.body_text
        assert sms.recipient == PHONE and f"/pay/{attempt.token}" in sms.body_text
        assert sms.sms_segments == sms_segments(sms.body_text)
        assert whatsapp.template_name == "payment_recovery"
        assert whatsapp.template_language == "es"
        assert whatsapp.template_parameters is not None
        assert (
            whatsapp.template_parameters[2] == f"https://recovery.example.test/pay/{attempt.token}"
        )
        # And the logs say "outbox", with the kept message's id, and none is delivered
        logs = db.scalars(select(NotificationLog).where(NotificationLog.attempt_id == attempt.id))
        for log in logs:
            assert (log.provider, log.status) == ("outbox", "sent")
            assert log.delivered_at is None
            assert log.provider_message_id == f"outbox-{kept[log.channel].id}"

    def test_a_log_taken_again_after_its_lease_keeps_no_second_copy(
        self, db: Session, outbox_mode: None
    ) -> None:
        # Given a message the outbox already kept
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        assert run_due_now() == 1
        log = db.scalars(
            select(NotificationLog).where(NotificationLog.attempt_id == attempt.id)
        ).one()
        # When a worker whose lease expired sends the same log row again
        message = MessageContext(
            log_id=log.id,
            attempt_id=attempt.id,
            organization_id=account.organization.id,
            retry_number=0,
            max_retries=attempt.max_retries,
            channel="email",
            recipient="customer@example.com",
            locale="en",
            timezone="UTC",
            merchant_name=account.organization.name,
            customer_name=None,
            amount_minor=4999,
            currency="EUR",
            pay_url="https://recovery.example.test/pay/x",
            expires_at=attempt.expires_at,
            decline_category="soft",
        )
        again = asyncio.run(OutboxSender("email").send(message))
        # Then it gets the kept message's id back, and there is still one copy
        db.expire_all()
        assert again == log.provider_message_id
        assert db.scalar(select(func.count()).select_from(OutboxMessage)) == 1
