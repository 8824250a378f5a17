"""The retry statistics of one organization, aggregated by the database."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import NotificationLog, NotificationStatus
from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.schemas import RetryStats

_SENT = (NotificationStatus.sent, NotificationStatus.delivered)
_FAILED = (NotificationStatus.failed, NotificationStatus.bounced)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def compute_stats(session: Session, *, organization_id: int) -> RetryStats:
    """The six seed figures for one organization: two aggregate queries, no rows loaded."""
    attempts = session.execute(
        select(
            func.count(RecoveryAttempt.id),
            _count_where(
                RecoveryAttempt.status.in_(OPEN_STATUSES)
                & RecoveryAttempt.next_retry_at.is_not(None)
                # After the last reminder `next_retry_at` only marks the end of the grace period.
                & (RecoveryAttempt.retry_count < RecoveryAttempt.max_retries)
            ),
            _count_where(RecoveryAttempt.status == AttemptStatus.completed),
            func.avg(cast(RecoveryAttempt.retry_count, Float)),
        ).where(RecoveryAttempt.organization_id == organization_id)
    ).one()
    messages = session.execute(
        select(
            _count_where(NotificationLog.status.in_(_SENT)),
            _count_where(NotificationLog.status.in_(_FAILED)),
        ).where(NotificationLog.organization_id == organization_id)
    ).one()
    total, pending, completed, average = attempts
    sent, failed = messages
    return RetryStats(
        total_attempts=int(total),
        pending_retries=int(pending),
        sent_count=int(sent),
        completed_count=int(completed),
        failed_count=int(failed),
        avg_retry_count=round(float(average), 2) if average is not None else 0.0,
    )
