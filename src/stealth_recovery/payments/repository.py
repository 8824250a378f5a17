"""Transaction and failure-event queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt


def get_transaction_by_ref(
    session: Session, *, organization_id: int, external_ref: str
) -> Transaction | None:
    stmt = select(Transaction).where(
        Transaction.organization_id == organization_id, Transaction.external_ref == external_ref
    )
    return session.scalar(stmt)


def get_failure_by_key(
    session: Session, *, organization_id: int, idempotency_key: str
) -> FailureEvent | None:
    stmt = select(FailureEvent).where(
        FailureEvent.organization_id == organization_id,
        FailureEvent.idempotency_key == idempotency_key,
    )
    return session.scalar(stmt)


def attempt_for_failure(session: Session, *, failure: FailureEvent) -> RecoveryAttempt | None:
    """The attempt this failure opened, else the newest attempt of its transaction."""
    opened = session.scalar(
        select(RecoveryAttempt).where(RecoveryAttempt.failure_event_id == failure.id)
    )
    if opened is not None:
        return opened
    stmt = (
        select(RecoveryAttempt)
        .where(RecoveryAttempt.transaction_id == failure.transaction_id)
        .order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def hard_declined_attempt(
    session: Session,
    *,
    organization_id: int,
    transaction_id: int,
    refs: Sequence[str | None],
) -> RecoveryAttempt | None:
    """An attempt stopped by a hard decline of this payment: of the transaction itself, or of
    a transaction known by one of these payment ids (reference, payment or invoice id)."""
    ids = [r for r in dict.fromkeys(refs) if r]
    same_payment = select(Transaction.id).where(
        Transaction.organization_id == organization_id,
        or_(
            Transaction.external_ref.in_(ids),
            Transaction.psp_payment_id.in_(ids),
            Transaction.psp_invoice_id.in_(ids),
        ),
    )
    stmt = (
        select(RecoveryAttempt)
        .where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.decline_category == DeclineCategory.hard,
            or_(
                RecoveryAttempt.transaction_id == transaction_id,
                RecoveryAttempt.transaction_id.in_(same_payment.scalar_subquery()),
            ),
        )
        .order_by(RecoveryAttempt.id)
        .limit(1)
    )
    return session.scalar(stmt)
