"""The dashboard's own reads: an attempt's transaction and failure, the local outbox.

Attempts and their messages are read through `recovery.repository` and
`notifications.repository`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import OutboxMessage
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt


def transaction_of(session: Session, attempt: RecoveryAttempt) -> Transaction:
    transaction = session.get(Transaction, attempt.transaction_id)
    assert transaction is not None  # the foreign key cascades: an attempt has its transaction
    return transaction


def failure_of(session: Session, attempt: RecoveryAttempt) -> FailureEvent | None:
    if attempt.failure_event_id is None:
        return None
    return session.get(FailureEvent, attempt.failure_event_id)


def outbox_messages(
    session: Session, *, organization_id: int, channel: str, limit: int
) -> Sequence[OutboxMessage]:
    """The organization's newest messages kept by the local outbox on one channel."""
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.organization_id == organization_id, OutboxMessage.channel == channel)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    ).all()


def outbox_counts(session: Session, *, organization_id: int) -> dict[str, int]:
    """How many messages the outbox keeps per channel for the organization."""
    stmt = (
        select(OutboxMessage.channel, func.count())
        .where(OutboxMessage.organization_id == organization_id)
        .group_by(OutboxMessage.channel)
    )
    return {channel: n for channel, n in session.execute(stmt)}
