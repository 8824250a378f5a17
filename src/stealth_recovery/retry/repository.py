"""Retry policy queries, and the claims of the due-attempt queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy


def get_active(session: Session, *, organization_id: int) -> RetryPolicy | None:
    stmt = select(RetryPolicy).where(
        RetryPolicy.organization_id == organization_id, RetryPolicy.is_active.is_(True)
    )
    return session.scalar(stmt)


def list_for_org(session: Session, *, organization_id: int) -> list[RetryPolicy]:
    stmt = (
        select(RetryPolicy)
        .where(RetryPolicy.organization_id == organization_id)
        .order_by(
            RetryPolicy.is_active.desc(), RetryPolicy.created_at.desc(), RetryPolicy.id.desc()
        )
    )
    return list(session.scalars(stmt))


def deactivate_all(session: Session, *, organization_id: int) -> None:
    """Deactivate the organization's policies.

    Runs before a new active policy is inserted in the same transaction; the partial unique
    index on active policies turns a concurrent second activation into an IntegrityError
    instead of two active policies.
    """
    session.execute(
        update(RetryPolicy)
        .where(RetryPolicy.organization_id == organization_id, RetryPolicy.is_active.is_(True))
        .values(is_active=False)
        .execution_options(synchronize_session="fetch")
    )


@dataclass(frozen=True)
class ClaimedStep:
    """One reminder step a worker is to send: attempt id and 0-based retry number."""

    attempt_id: int
    retry_number: int


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        RecoveryAttempt.status.in_(OPEN_STATUSES),
        RecoveryAttempt.next_retry_at <= now,
    ]


def expire_due(session: Session, *, now: datetime, limit: int) -> int:
    """Expire due attempts whose link has run out, so the queue never sends for them.

    Rows another claimer holds are skipped; they are handled on a later pass.
    """
    ids = (
        select(RecoveryAttempt.id)
        .where(*_due(now), RecoveryAttempt.expires_at <= now)
        .order_by(RecoveryAttempt.next_retry_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.id.in_(ids.scalar_subquery()))
        .values(status=AttemptStatus.expired, next_retry_at=None, updated_at=now)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


def cancel_exhausted_due(session: Session, *, now: datetime, limit: int) -> int:
    """Cancel attempts whose last reminder went out and whose grace period has passed."""
    ids = (
        select(RecoveryAttempt.id)
        .where(*_due(now), RecoveryAttempt.retry_count >= RecoveryAttempt.max_retries)
        .order_by(RecoveryAttempt.next_retry_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.id.in_(ids.scalar_subquery()))
        .values(
            status=AttemptStatus.cancelled,
            cancelled_at=now,
            cancel_reason="retries exhausted",
            next_retry_at=None,
            updated_at=now,
        )
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


def claim_due_steps(
    session: Session, *, now: datetime, limit: int, lease: timedelta
) -> list[ClaimedStep]:
    """Claim up to `limit` due reminder steps under a lease.

    Prevents two schedulers dispatching the same step: rows another transaction is claiming
    are skipped (`FOR UPDATE SKIP LOCKED`; SQLite has a single writer), and a claimed row's
    `next_retry_at` moves to the end of the lease, so it is not due again unless the worker
    that took it dies before finishing the step.

    The locking subquery only walks the due index and stops after `limit` rows; the expiry and
    retries-left checks sit on the outer UPDATE, so the planner never reads every due row to
    estimate them. (`expire_due` and `cancel_exhausted_due` run first in the same pass, so a
    locked row that fails them is rare and is handled on the next pass.)
    """
    ids = (
        select(RecoveryAttempt.id)
        .where(*_due(now))
        .order_by(RecoveryAttempt.next_retry_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id.in_(ids.scalar_subquery()),
            RecoveryAttempt.expires_at > now,
            RecoveryAttempt.retry_count < RecoveryAttempt.max_retries,
        )
        .values(next_retry_at=now + lease)
        .returning(RecoveryAttempt.id, RecoveryAttempt.retry_count)
        .execution_options(synchronize_session=False)
    )
    return [ClaimedStep(attempt_id=row[0], retry_number=row[1]) for row in result]


def expire_past_deadline(session: Session, *, now: datetime) -> int:
    """Every open attempt past `expires_at` becomes `expired` (the daily cleanup)."""
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.status.in_(OPEN_STATUSES), RecoveryAttempt.expires_at <= now)
        .values(status=AttemptStatus.expired, next_retry_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
