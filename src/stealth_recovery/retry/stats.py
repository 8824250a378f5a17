"""The retry statistics of one organization, aggregated by the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import NotificationLog, NotificationStatus
from stealth_recovery.notifications.outbox import PROVIDER as OUTBOX
from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.schemas import RetryStats

_SENT = (NotificationStatus.sent, NotificationStatus.delivered)
_FAILED = (NotificationStatus.failed, NotificationStatus.bounced)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def compute_stats(
    session: Session, *, organization_id: int, since: datetime | None = None
) -> RetryStats:
    """The six /v1/retry/stats figures of one organization: two aggregate queries, no rows loaded.

    With `since` (UTC), only attempts opened and messages written from then on count.
    """
    attempt_scope = [RecoveryAttempt.organization_id == organization_id]
    message_scope = [NotificationLog.organization_id == organization_id]
    if since is not None:
        attempt_scope.append(RecoveryAttempt.created_at >= since)
        message_scope.append(NotificationLog.created_at >= since)
    attempts = session.execute(
        select(
            func.count(RecoveryAttempt.id),
            _count_where(
                RecoveryAttempt.status.in_(OPEN_STATUSES)
                & RecoveryAttempt.next_retry_at.is_not(None)
                # After the last reminder `next_retry_at` only marks the end of the grace period.
                & (RecoveryAttempt.retry_count < RecoveryAttempt.max_retries)
            ),
            _count_where(
                (RecoveryAttempt.status == AttemptStatus.completed)
                & RecoveryAttempt.test_payment.is_(False)
            ),
            _count_where(RecoveryAttempt.test_payment.is_(True)),
            func.avg(cast(RecoveryAttempt.retry_count, Float)),
            _count_where(
                (RecoveryAttempt.status == AttemptStatus.completed)
                & RecoveryAttempt.paid_after_end.is_(True)
            ),
        ).where(*attempt_scope)
    ).one()
    messages = session.execute(
        select(
            # A message the local outbox kept never reached a customer: counted apart.
            _count_where(NotificationLog.status.in_(_SENT) & (NotificationLog.provider != OUTBOX)),
            _count_where(NotificationLog.status.in_(_FAILED)),
            _count_where(NotificationLog.status.in_(_SENT) & (NotificationLog.provider == OUTBOX)),
            _count_where(NotificationLog.status == NotificationStatus.unconfirmed),
        ).where(*message_scope)
    ).one()
    total, pending, completed, test_payments, average, late = attempts
    sent, failed, kept, unconfirmed = messages
    return RetryStats(
        total_attempts=int(total),
        pending_retries=int(pending),
        sent_count=int(sent),
        outbox_count=int(kept),
        completed_count=int(completed),
        test_payment_count=int(test_payments),
        failed_count=int(failed),
        unconfirmed_count=int(unconfirmed),
        avg_retry_count=round(float(average), 2) if average is not None else 0.0,
        recovered_after_end_count=int(late),
    )
