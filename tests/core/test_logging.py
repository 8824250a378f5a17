"""No secret and no personal data in logs, whatever code path logs an exception.

Every path that logs an exception is made to fire for real (a login on an unreadable password
hash, a Stripe webhook whose stored secret no longer decrypts, a sender that crashes mid-send, a
scheduler tick on a missing table) with known values in every secret setting; then the whole
output is searched for each secret, the customer's address and the pay-link token.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import structlog
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.auth.models import User
from stealth_recovery.core.logging import Redactor, configure_logging
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.notifications.sender import ProviderNotifier
from stealth_recovery.notifications.types import MessageContext
from stealth_recovery.retry.scheduler import EmbeddedScheduler
from tests.support.builders import make_account, make_attempt

SECRETS = {
    "SECRET_KEY": "known-signing-key-1111111111111111111111111111",
    "SECRET_KEY_PREVIOUS": "known-previous-key-22222222222222222222222222",
    "SMTP_PASSWORD": "known-smtp-password-3333",
    "TWILIO_AUTH_TOKEN": "known-twilio-token-4444",
    "WHATSAPP_API_KEY": "known-whatsapp-key-5555",
    "WHATSAPP_APP_SECRET": "known-app-secret-6666",
    "WHATSAPP_VERIFY_TOKEN": "known-verify-token-7777",
}
CUSTOMER_EMAIL = "jane.customer@example.com"
PASSWORD = "the-users-typed-password-8888"


class Output:
    def __init__(self, buffer: io.StringIO) -> None:
        self.buffer = buffer

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def assert_clean(self, *personal: str) -> None:
        out = self.text
        for name, value in SECRETS.items():
            assert value not in out, f"{name} leaked into the log"
        for value in (CUSTOMER_EMAIL, *personal):
            assert value not in out, f"{value!r} leaked into the log"


@pytest.fixture(params=["console", "json"])
def logs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Output]:
    """Known secret settings, logging configured as `serve` does, written to a buffer."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SMTP_USER", "mailer")
    get_settings.cache_clear()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("DEBUG", request.param == "json", stream=buffer)
    try:
        yield Output(buffer)
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


class TestExceptionPaths:
    def test_a_crashing_login(self, logs: Output, db: Session) -> None:
        # Given a user whose stored hash no library can read
        account = make_account(db)
        user = db.get(User, account.user.id)
        assert user is not None
        user.email = CUSTOMER_EMAIL
        user.password_hash = "$unknown$" + SECRETS["SECRET_KEY"]
        db.commit()
        # When they log in
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            response = client.post(
                "/v1/auth/login", json={"email": CUSTOMER_EMAIL, "password": PASSWORD}
            )
        # Then a 500 without detail, a logged traceback, and nothing secret in the log
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error", "type": "internal_error"}
        assert "request_failed" in logs.text and "Traceback" in logs.text
        logs.assert_clean(PASSWORD)

    def test_a_crashing_stripe_webhook(self, logs: Output, db: Session) -> None:
        # Given an organization whose stored signing secret was encrypted under another key
        account = make_account(db)
        other = Fernet(Fernet.generate_key())
        db.add(
            StripeConnection(
                organization_id=account.organization.id,
                secret_key_encrypted=other.encrypt(b"sk_test_x").decode(),
                webhook_secret_encrypted=other.encrypt(b"whsec_x").decode(),
                secret_key_last4="xxxx",
            )
        )
        db.commit()
        body = '{"id": "evt_1", "type": "invoice.payment_failed", "data": {"object": {'
        body += f'"customer_email": "{CUSTOMER_EMAIL}"}}}}}}'
        # When Stripe delivers an event
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            response = client.post(
                f"/v1/webhooks/stripe/{account.organization.slug}",
                content=body,
                headers={"Stripe-Signature": "t=1,v1=" + "a" * 64},
            )
        assert response.status_code == 500
        assert "request_failed" in logs.text and "Traceback" in logs.text
        logs.assert_clean()

    def test_a_crashing_send(self, logs: Output, db: Session) -> None:
        class CrashingSender:
            provider = "smtp"

            async def send(self, message: MessageContext) -> str:
                raise ValueError("connection pool in a bad state")

        attempt = make_attempt(db, make_account(db).organization, email=CUSTOMER_EMAIL)
        message = MessageContext(
            log_id=1,
            attempt_id=attempt.id,
            organization_id=attempt.organization_id,
            retry_number=0,
            max_retries=3,
            channel="email",
            recipient=CUSTOMER_EMAIL,
            locale="en",
            timezone="UTC",
            merchant_name="Acme",
            customer_name="Jane",
            amount_minor=4999,
            currency="EUR",
            pay_url=f"http://localhost:8000/pay/{attempt.token}",
            expires_at=utc_now() + timedelta(days=7),
            decline_category="soft",
        )
        notifier = ProviderNotifier(senders={"email": CrashingSender()})
        outcome = asyncio.run(notifier.send(replace(message)))
        assert outcome.status == "failed"
        assert "notification_send_crashed" in logs.text and "Traceback" in logs.text
        logs.assert_clean(attempt.token)

    def test_a_failing_scheduler_tick(self, logs: Output, db: Session) -> None:
        # Given a due attempt, and its table gone from under the scheduler (a broken migration)
        make_attempt(db, make_account(db).organization, email=CUSTOMER_EMAIL)
        db.commit()
        db.execute(text("ALTER TABLE recovery_attempts RENAME TO recovery_attempts_away"))
        db.commit()
        scheduler = EmbeddedScheduler(interval_seconds=0.05)
        try:
            scheduler.start()
            deadline = time.monotonic() + 30
            while "embedded_scheduler_tick_failed" not in logs.text:
                assert time.monotonic() < deadline, logs.text
                time.sleep(0.05)
        finally:
            scheduler.stop()
            db.execute(text("ALTER TABLE recovery_attempts_away RENAME TO recovery_attempts"))
            db.commit()
        assert "Traceback" in logs.text
        logs.assert_clean()


class TestAccessLog:
    def test_uvicorns_access_log_masks_the_pay_link_token(self, logs: Output, db: Session) -> None:
        import uvicorn

        # Given the app served by uvicorn as `serve` runs it (its loggers through ours)
        attempt = make_attempt(db, make_account(db).organization, email=CUSTOMER_EMAIL)
        db.commit()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_config=None)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # When a customer opens the pay link (an address in the query, as mail tools add)
            response = httpx.get(
                f"http://127.0.0.1:{port}/pay/{attempt.token}?utm_email={CUSTOMER_EMAIL}"
            )
            assert response.status_code == 200
        finally:
            server.should_exit = True
            thread.join(timeout=30)
        # Then the access line is there, with the token cut and the address masked
        assert f"/pay/{attempt.token[:4]}…" in logs.text
        assert "j***@example.com" in logs.text
        logs.assert_clean(attempt.token)


class TestRedactor:
    def test_masks_addresses_numbers_tokens_and_given_secrets(self) -> None:
        redactor = Redactor(["s3cr3t-value"])
        line = (
            "to jane.doe@mail.example.org +4915123456789 "
            "GET /pay/AbCdEfGhIjKlMnOp/success key=s3cr3t-value at 2026-11-28T09:00:00Z"
        )
        assert redactor.text(line) == (
            "to j***@mail.example.org ***789 "
            "GET /pay/AbCd…/success key=[secret] at 2026-11-28T09:00:00Z"
        )
