"""The one place tests build what they start from: organizations with their people and API keys,
retry policies, failed payments and their recovery attempts, notification logs, and the messages
the engine hands to a sender. Rows go through the services where a service makes them (a failed
payment through ingestion's `record_failure`), and each builder commits."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import Role, User
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.ingestion.service import FailureInput, record_failure
from stealth_recovery.notifications.models import NotificationLog, NotificationStatus, OutboxMessage
from stealth_recovery.notifications.types import MessageContext
from stealth_recovery.organizations.models import Organization
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.policy import create_policy

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@dataclass
class Account:
    organization: Organization
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# -- organizations, people, credentials ---------------------------------------------------


def make_account(
    session: Session, *, role: Role = Role.admin, organization: Organization | None = None
) -> Account:
    """An organization (new unless given) with one committed user of the given role."""
    n = next(_counter)
    user: User | None = None
    if organization is None:
        organization, user = auth_service.register(
            session,
            organization_name=f"Org {n}",
            organization_slug=f"org-{n}",
            email=f"admin{n}@example.com",
            password=PASSWORD,
            full_name=f"Admin {n}",
        )
    if user is None or role != Role.admin:
        user = auth_service.create_user(
            session,
            organization_id=organization.id,
            email=f"{role.value}{n}@example.com",
            password=PASSWORD,
            role=role,
            full_name=None,
        )
    session.commit()
    token, _ = auth_service.issue_token(user)
    return Account(organization=organization, user=user, token=token)


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def api_key_headers(session: Session, organization: Organization) -> dict[str, str]:
    """Headers carrying a fresh, committed API key of the organization."""
    _, plain = auth_service.create_api_key(
        session, organization_id=organization.id, name="billing-server", created_by_id=None
    )
    session.commit()
    return {"X-API-Key": plain}


ROLES = ("admin", "analyst", "operator", "api_key")


def headers_for(session: Session, organization: Organization, role: str) -> dict[str, str]:
    """Credentials of the given role (or an API key) in an existing organization."""
    if role == "api_key":
        return api_key_headers(session, organization)
    return make_account(session, role=Role(role), organization=organization).headers


# -- policies ---------------------------------------------------------------------------------


def make_policy(session: Session, organization: Organization, **overrides: Any) -> RetryPolicy:
    values: dict[str, Any] = {
        "name": "Test policy",
        "max_retries": 3,
        "initial_delay_minutes": 60,
        "backoff_multiplier": 2.0,
        "max_delay_minutes": 1440,
        "enabled_channels": ["email"],
    }
    values.update(overrides)
    policy = create_policy(session, organization_id=organization.id, **values)
    session.commit()
    return policy


# -- failed payments and their attempts -------------------------------------------------------


def failure_input(**overrides: Any) -> FailureInput:
    """A failed payment as a gateway reports it: Jane Doe, €49.99, a soft decline."""
    values: dict[str, Any] = {
        "external_ref": "inv_1001",
        "amount_minor": 4999,
        "currency": "EUR",
        "customer_email": "Jane.Doe@Example.com",
        "customer_phone": "+49 151 23456789",
        "customer_name": "Jane Doe",
        "customer_locale": "de-DE",
        "customer_timezone": "Europe/Berlin",
        "gateway": "stripe",
        "reason": "Your card has insufficient funds.",
        "decline_code": "insufficient_funds",
        "occurred_at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        "idempotency_key": None,
        "psp_customer_id": None,
        "psp_payment_id": None,
        "raw_metadata": {},
    }
    values.update(overrides)
    return FailureInput(**values)


def make_attempt(
    session: Session,
    organization: Organization,
    *,
    email: str | None = "customer@example.com",
    phone: str | None = None,
    name: str | None = None,
    amount_minor: int = 4999,
    currency: str = "EUR",
    locale: str = "en",
    timezone: str | None = "Europe/Madrid",
    decline_code: str | None = "insufficient_funds",
    ref: str | None = None,
    opened_at: datetime | None = None,
    due: bool = True,
) -> RecoveryAttempt:
    """A failed payment recorded through ingestion (transaction, failure event, attempt under the
    organization's policy), committed. `opened_at` records it at that moment instead of now;
    `due` (the default) makes its first reminder due now, `due=False` leaves the policy's delay."""
    n = next(_counter)
    moment = opened_at or utc_now()
    with shifted_clock(moment - utc_now() if opened_at else timedelta(0)):
        opened = record_failure(
            session,
            organization_id=organization.id,
            data=failure_input(
                external_ref=ref or f"txn_{n}",
                amount_minor=amount_minor,
                currency=currency,
                customer_email=email,
                customer_phone=phone,
                customer_name=name or f"Customer {n}",
                customer_locale=locale,
                customer_timezone=timezone,
                reason="Your card was declined.",
                decline_code=decline_code,
                occurred_at=moment - timedelta(seconds=5),
            ),
        )
    if due:
        opened.attempt.next_retry_at = utc_now() - timedelta(seconds=1)
    session.commit()
    return opened.attempt


# -- notification logs and messages -----------------------------------------------------------

_DEFAULT_RECIPIENTS = {"email": "customer@example.com", "sms": "+12025550100"}
_DEFAULT_PROVIDERS = {"email": "smtp", "sms": "twilio", "whatsapp": "whatsapp"}
_SENT = ("sent", "delivered", "bounced", "failed")
_DERIVED = "derived"


def add_log(
    session: Session,
    attempt: RecoveryAttempt,
    *,
    retry_number: int = 0,
    channel: str = "email",
    status: str = NotificationStatus.sent,
    recipient: str | None = None,
    provider: str | None = None,
    provider_message_id: str | None = _DERIVED,
    at: datetime | None = None,
    sent_at: datetime | None = None,
    error: str | None = None,
) -> NotificationLog:
    """A message of the attempt's step `retry_number` as the engine and a delivery callback would
    have recorded it, committed: created at `at` (now), sent 2 s later (or at `sent_at`) with a
    provider id, delivered 3 min later, failed or bounced 1 min later with `error`."""
    at = at or utc_now()
    log = NotificationLog(
        organization_id=attempt.organization_id,
        attempt_id=attempt.id,
        retry_number=retry_number,
        channel=channel,
        recipient=recipient or _DEFAULT_RECIPIENTS.get(channel, "+12025550100"),
        provider=provider or _DEFAULT_PROVIDERS[channel],
        status=status,
        send_attempts=1,
        created_at=at,
        updated_at=at,
    )
    if status in ("sent", "delivered", "bounced") or sent_at is not None:
        log.sent_at = sent_at or at + timedelta(seconds=2)
    if provider_message_id == _DERIVED:
        provider_message_id = (
            f"<msg-{attempt.id}-{retry_number}@example.com>" if status in _SENT else None
        )
    log.provider_message_id = provider_message_id
    if status == "delivered":
        log.delivered_at = at + timedelta(minutes=3)
    if status in ("failed", "bounced"):
        log.failed_at = at + timedelta(minutes=1)
        log.error_message = error or "550 5.1.1 mailbox unavailable"
    session.add(log)
    session.commit()
    return log


def make_log(
    session: Session,
    *,
    channel: str = "sms",
    recipient: str = "+34612345678",
    provider: str = "twilio",
    provider_message_id: str | None = "SM" + "a" * 32,
    status: str = NotificationStatus.sent,
    sent_at: datetime | None = None,
) -> NotificationLog:
    """A log row of a new organization's own attempt as the engine leaves it after sending (sent
    now), for the delivery callbacks to find."""
    attempt = make_attempt(
        session,
        make_account(session).organization,
        email="ana@example.com",
        phone="+34612345678",
        name="Ana Pérez",
        locale="es-ES",
        due=False,
    )
    return add_log(
        session,
        attempt,
        channel=channel,
        recipient=recipient,
        provider=provider,
        provider_message_id=provider_message_id,
        status=status,
        at=utc_now(),
        sent_at=sent_at or (utc_now() if status != NotificationStatus.pending else None),
    )


def keep_in_outbox(session: Session, attempt: RecoveryAttempt) -> list[OutboxMessage]:
    """The three messages the local outbox keeps for a step on every channel."""
    kept = []
    for channel, recipient in (
        ("email", "ada@example.com"),
        ("sms", "+12025550100"),
        ("whatsapp", "+12025550100"),
    ):
        log = add_log(
            session,
            attempt,
            channel=channel,
            recipient=recipient,
            provider="outbox",
            provider_message_id=None,
        )
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
        session.add(row)
        kept.append(row)
    session.commit()
    return kept


PAY_URL = "https://pay.example.test/pay/q3Vb0zJmZkS1uN8pYtXo7wR4eLcA9hGd2fKsM6iUjQe"


def message_context(**overrides: Any) -> MessageContext:
    """A reminder as the engine hands it over: Ana, €49.99 to Acme, expiring 5 Dec 15:00 UTC."""
    base = MessageContext(
        log_id=101,
        attempt_id=11,
        organization_id=1,
        retry_number=0,
        max_retries=3,
        channel="email",
        recipient="ana@example.test",
        locale="en",
        timezone="America/New_York",
        merchant_name="Acme Outdoor",
        customer_name="Ana Pérez",
        amount_minor=4999,
        currency="EUR",
        pay_url=PAY_URL,
        expires_at=datetime(2026, 12, 5, 15, 0, tzinfo=UTC),
        decline_category="soft",
    )
    return replace(base, **overrides)


# -- reading back what requests and workers committed ----------------------------------------


def see_committed(session: Session) -> None:
    """Let the test's session see what requests and workers committed since its last read.

    Ends its transaction first: on SQLite a read transaction keeps the snapshot it started with.
    """
    session.commit()
    session.expire_all()


def reload_attempt(session: Session, attempt: RecoveryAttempt | int) -> RecoveryAttempt:
    """The attempt as it is stored now."""
    see_committed(session)
    found = session.get(RecoveryAttempt, attempt if isinstance(attempt, int) else attempt.id)
    assert found is not None
    return found
