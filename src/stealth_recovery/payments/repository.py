"""Transaction and failure-event queries."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.payments.models import FailureEvent, Transaction


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
