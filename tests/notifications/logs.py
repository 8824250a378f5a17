"""Real notification log rows for callback tests: account, transaction, attempt, log."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.models import NotificationLog, NotificationStatus
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.service import open_attempt
from stealth_recovery.retry.policy import effective_policy
from tests.support.builders import make_account

_refs = itertools.count(1)


def make_log(
    db: Session,
    *,
    channel: str = "sms",
    provider: str = "twilio",
    provider_message_id: str | None = "SM" + "a" * 32,
    status: NotificationStatus = NotificationStatus.sent,
    recipient: str = "+34612345678",
    sent_at: datetime | None = None,
) -> NotificationLog:
    """A committed log row of a real attempt, as the engine leaves it after sending."""
    account = make_account(db)
    transaction = Transaction(
        organization_id=account.organization.id,
        external_ref=f"order-{next(_refs)}",
        amount_minor=4999,
        currency="EUR",
        customer_email="ana@example.test",
        customer_phone="+34612345678",
        customer_name="Ana Pérez",
        customer_locale="es-ES",
        customer_timezone="Europe/Madrid",
    )
    db.add(transaction)
    db.flush()
    attempt = open_attempt(
        db,
        transaction=transaction,
        failure=None,
        policy=effective_policy(db, organization_id=account.organization.id),
    ).attempt
    log = NotificationLog(
        organization_id=account.organization.id,
        attempt_id=attempt.id,
        retry_number=0,
        channel=channel,
        recipient=recipient,
        status=status,
        provider=provider,
        provider_message_id=provider_message_id,
        send_attempts=1,
        sent_at=sent_at or (utc_now() if status != NotificationStatus.pending else None),
    )
    db.add(log)
    db.commit()
    return log
