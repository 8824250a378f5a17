"""Recovery attempt queries and the conditional updates that settle races on one attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt


def get_open_for_transaction(session: Session, *, transaction_id: int) -> RecoveryAttempt | None:
    stmt = select(RecoveryAttempt).where(
        RecoveryAttempt.transaction_id == transaction_id,
        RecoveryAttempt.status.in_(OPEN_STATUSES),
    )
    return session.scalar(stmt)


def get_by_token(session: Session, token: str) -> RecoveryAttempt | None:
    return session.scalar(select(RecoveryAttempt).where(RecoveryAttempt.token == token))


def finish(
    session: Session,
    *,
    attempt_id: int,
    status: AttemptStatus,
    at: datetime,
    reason: str | None = None,
    paid_via: str | None = None,
) -> bool:
    """Move an open attempt to a final state; False when it was already final.

    Prevents a payment and a reminder (or two webhooks) racing on the same attempt: the UPDATE
    takes the row lock that the send claim also takes, and only one of them finds it open.
    """
    values: dict[str, object] = {"status": status, "next_retry_at": None, "updated_at": at}
    if status == AttemptStatus.completed:
        values["completed_at"] = at
        values["completed_after_step"] = RecoveryAttempt.retry_count
        values["paid_via"] = paid_via
    else:
        values["cancelled_at"] = at
        values["cancel_reason"] = reason
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.id == attempt_id, RecoveryAttempt.status.in_(OPEN_STATUSES))
        .values(**values)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def mark_opened(session: Session, *, attempt_id: int, at: datetime) -> bool:
    """Record the first opening of the pay link; later openings change nothing."""
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status.in_((AttemptStatus.created, AttemptStatus.sent)),
            RecoveryAttempt.opened_at.is_(None),
        )
        .values(status=AttemptStatus.opened, opened_at=at, updated_at=at)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def complete_after_end(session: Session, *, attempt_id: int, at: datetime, paid_via: str) -> bool:
    """A payment for an attempt that had ended (cancelled, expired): completed, marked as paid
    after the end. False when the attempt is open or already completed."""
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status.in_((AttemptStatus.cancelled, AttemptStatus.expired)),
        )
        .values(
            status=AttemptStatus.completed,
            completed_at=at,
            completed_after_step=RecoveryAttempt.retry_count,
            next_retry_at=None,
            paid_after_end=True,
            paid_via=paid_via,
            updated_at=at,
        )
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def flag_second_payment(session: Session, *, attempt_id: int, at: datetime, ref: str) -> bool:
    """Record the first extra payment of a completed attempt; False if one is already flagged."""
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status == AttemptStatus.completed,
            RecoveryAttempt.second_payment_at.is_(None),
        )
        .values(second_payment_at=at, second_payment_ref=ref, updated_at=at)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None
