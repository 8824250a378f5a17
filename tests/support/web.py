"""Rows and logins the dashboard tests share (also used by the browser tests)."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.ingestion.service import FailureInput, record_failure
from stealth_recovery.notifications.models import NotificationLog, OutboxMessage
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import PASSWORD

_refs = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def web_login(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Log in through the dashboard's form, as a browser would."""
    page = client.get("/dashboard/login")
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_from(page.text), "email": email, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def post_form(client: TestClient, page_path: str, action: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    """Submit a form the way the page does: with the CSRF token the page carries."""
    token = csrf_from(client.get(page_path).text)
    return client.post(action, data={"csrf_token": token, **data}, follow_redirects=False)


def make_attempt(
    db: Session,
    *,
    organization_id: int,
    name: str = "Ada Lovelace",
    email: str | None = "ada@example.com",
    phone: str | None = None,
    amount_minor: int = 4900,
    currency: str = "EUR",
    decline_code: str = "insufficient_funds",
    opened_at: datetime | None = None,
) -> RecoveryAttempt:
    """A failed payment recorded through the real ingestion path, committed."""
    n = next(_refs)
    moment = opened_at or utc_now()
    with shifted_clock(moment - utc_now()):
        opened = record_failure(
            db,
            organization_id=organization_id,
            data=FailureInput(
                external_ref=f"inv_{n:05d}",
                amount_minor=amount_minor,
                currency=currency,
                customer_email=email,
                customer_phone=phone,
                customer_name=name,
                customer_locale="en",
                customer_timezone="Europe/London",
                gateway="stripe",
                reason="Your card was declined.",
                decline_code=decline_code,
                occurred_at=moment - timedelta(seconds=5),
                idempotency_key=None,
                psp_customer_id=None,
                psp_payment_id=None,
            ),
        )
    db.commit()
    return opened.attempt


def add_message(
    db: Session,
    attempt: RecoveryAttempt,
    *,
    retry_number: int = 0,
    channel: str = "email",
    status: str = "delivered",
    at: datetime | None = None,
    error: str | None = None,
) -> NotificationLog:
    """A message as the engine and a delivery callback would have recorded it."""
    at = at or utc_now()
    log = NotificationLog(
        organization_id=attempt.organization_id,
        attempt_id=attempt.id,
        retry_number=retry_number,
        channel=channel,
        recipient="ada@example.com" if channel == "email" else "+12025550100",
        provider="smtp" if channel == "email" else "twilio",
        status=status,
        send_attempts=1,
        created_at=at,
        updated_at=at,
    )
    if status in ("sent", "delivered", "bounced"):
        log.sent_at = at + timedelta(seconds=2)
        log.provider_message_id = f"<msg-{attempt.id}-{retry_number}@example.com>"
    if status == "delivered":
        log.delivered_at = at + timedelta(minutes=3)
    if status in ("failed", "bounced"):
        log.failed_at = at + timedelta(minutes=1)
        log.error_message = error or "550 5.1.1 mailbox unavailable"
    db.add(log)
    db.commit()
    return log


def keep_in_outbox(db: Session, attempt: RecoveryAttempt) -> list[OutboxMessage]:
    """The three messages the local outbox keeps for a step on every channel."""
    kept = []
    for channel, recipient in (
        ("email", "ada@example.com"),
        ("sms", "+12025550100"),
        ("whatsapp", "+12025550100"),
    ):
        log = add_message(db, attempt, channel=channel, status="sent")
        log.provider = "outbox"
        log.provider_message_id = None
        text = (
            f"Your payment of €49.00 to Acme needs one more step: https://pay.example/pay/{channel}"
        )
        row = OutboxMessage(
            organization_id=attempt.organization_id,
            log_id=log.id,
            attempt_id=attempt.id,
            channel=channel,
            recipient=recipient,
            subject="Your payment of €49.00 to Acme did not go through"
            if channel == "email"
            else None,
            body_text=text,
            body_html=f"<p>{text}</p><a href='#'>Pay now</a>" if channel == "email" else None,
            sms_segments=1 if channel == "sms" else None,
            template_name="payment_recovery" if channel == "whatsapp" else None,
            template_language="en_US" if channel == "whatsapp" else None,
            template_parameters=["€49.00", "Acme", "https://pay.example/pay/w"]
            if channel == "whatsapp"
            else None,
        )
        db.add(row)
        kept.append(row)
    db.commit()
    return kept
