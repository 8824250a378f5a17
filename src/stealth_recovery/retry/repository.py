"""Retry policy queries, and the claims of the due-attempt queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, not_, or_, select, update
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import (
    UNSETTLED_STATUSES,
    NotificationLog,
    NotificationStatus,
)
from stealth_recovery.recovery.events import record_attempts_events
from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.webhooks.models import EventType


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
    """One reminder step a worker is to send: attempt id, 0-based retry number, and the claim
    token the queue pass wrote as the lease owner (None: not claimed by a queue pass)."""

    attempt_id: int
    retry_number: int
    claim: str | None = None


# Webhook events are written with the change, by the statement's caller here (the queue pass).
_EXHAUSTED = {"reason": "retries exhausted"}


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
    changed = list(result.scalars())
    record_attempts_events(session, changed, EventType.expired)
    return len(changed)


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
    changed = list(result.scalars())
    record_attempts_events(session, changed, EventType.cancelled, {i: _EXHAUSTED for i in changed})
    return len(changed)


def claim_due_steps(
    session: Session, *, now: datetime, limit: int, lease: timedelta, claim: str | None = None
) -> list[ClaimedStep]:
    """Claim up to `limit` due reminder steps under a lease owned by `claim` (a token).

    A due row is one whose lease has ended: its former owner, if any, stopped renewing it, and
    writing the new owner fences that owner off (its hand-overs and records are refused).

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
        .values(next_retry_at=now + lease, lease_owner=claim)
        .returning(RecoveryAttempt.id, RecoveryAttempt.retry_count)
        .execution_options(synchronize_session=False)
    )
    return [ClaimedStep(attempt_id=row[0], retry_number=row[1], claim=claim) for row in result]


def renew_leases(
    session: Session, *, attempt_ids: list[int], owners: list[str], until: datetime
) -> int:
    """Heartbeat: push the lease of steps still held by one of `owners` to `until`.

    A step another worker has claimed since (a new owner) is not touched.
    """
    if not attempt_ids:
        return 0
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id.in_(attempt_ids),
            RecoveryAttempt.lease_owner.in_(owners),
            RecoveryAttempt.status.in_(OPEN_STATUSES),
        )
        .values(next_retry_at=until)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def mark_handing_over(
    session: Session, *, log_ids: list[int], owner: str, now: datetime
) -> set[int]:
    """Mark messages as being handed over; returns the ids allowed to go to the provider.

    One statement is both checks made immediately before the provider call: the attempt is
    still open (a payment committed before this statement withholds the message) and its step
    is still leased by `owner` (a worker whose lease passed to another is fenced off). A row
    another worker settled (unconfirmed, cancelled) is not `pending` any more and is refused.
    Re-marking a row this owner marked already (a quick retry after a refused DATA) is allowed.
    """
    if not log_ids:
        return set()
    logs = NotificationLog
    ours = exists().where(
        RecoveryAttempt.id == logs.attempt_id,
        RecoveryAttempt.lease_owner == owner,
        RecoveryAttempt.status.in_(OPEN_STATUSES),
        RecoveryAttempt.next_retry_at > now,
    )
    result = session.execute(
        update(logs)
        .where(logs.id.in_(log_ids), logs.status.in_(UNSETTLED_STATUSES), ours)
        .values(status=NotificationStatus.handing_over, updated_at=now)
        .returning(logs.id)
        .execution_options(synchronize_session=False)
    )
    return {row[0] for row in result}


_CANCELLED_REASON = "not sent: the attempt ended before this message was handed over"
_UNKNOWN_REASON = (
    "outcome unknown: the hand-over was interrupted (the worker stopped); not sent again"
)


def settle_unsettled_logs(
    session: Session, *, now: datetime, attempt_ids: list[int] | None = None
) -> int:
    """Settle log rows nobody will finish: those of ended attempts or of steps already past.

    A `pending` row (never handed over) becomes `cancelled`; a `handing_over` row (the provider
    may have it) becomes `unconfirmed`. Walks only the partial index of unsettled rows.
    """
    logs = NotificationLog
    ended = exists().where(
        RecoveryAttempt.id == logs.attempt_id,
        or_(
            not_(RecoveryAttempt.status.in_(OPEN_STATUSES)),
            RecoveryAttempt.retry_count > logs.retry_number,
        ),
    )
    criteria: list[ColumnElement[bool]] = [logs.status.in_(UNSETTLED_STATUSES), ended]
    if attempt_ids is not None:
        criteria.append(logs.attempt_id.in_(attempt_ids))
    is_pending = logs.status == NotificationStatus.pending
    result = session.execute(
        update(logs)
        .where(and_(*criteria))
        .values(
            status=case(
                (is_pending, NotificationStatus.cancelled.value),
                else_=NotificationStatus.unconfirmed.value,
            ),
            error_message=case((is_pending, _CANCELLED_REASON), else_=_UNKNOWN_REASON),
            failed_at=case((is_pending, now), else_=logs.failed_at),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def expire_past_deadline(session: Session, *, now: datetime) -> int:
    """Every open attempt past `expires_at` becomes `expired` (the daily cleanup)."""
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.status.in_(OPEN_STATUSES), RecoveryAttempt.expires_at <= now)
        .values(status=AttemptStatus.expired, next_retry_at=None, updated_at=now)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    changed = list(result.scalars())
    record_attempts_events(session, changed, EventType.expired)
    return len(changed)
