"""The retry statistics of one organization, aggregated by the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.retry.schemas import RetryStats


def compute_stats(
    session: Session, *, organization_id: int, since: datetime | None = None
) -> RetryStats:
    """The six /v1/retry/stats figures of one organization: two aggregate queries, no rows loaded.

    With `since` (UTC), only attempts opened and messages written from then on count.
    """
    attempts = attempts_repository.totals(session, organization_id=organization_id, since=since)
    messages = logs_repository.totals(session, organization_id=organization_id, since=since)
    average = attempts.average_retry_count
    return RetryStats(
        total_attempts=attempts.total,
        pending_retries=attempts.pending_retries,
        sent_count=messages.sent,
        outbox_count=messages.kept,
        completed_count=attempts.completed,
        test_payment_count=attempts.test_payments,
        failed_count=messages.failed,
        unconfirmed_count=messages.unconfirmed,
        avg_retry_count=round(average, 2) if average is not None else 0.0,
        recovered_after_end_count=attempts.paid_after_end,
    )
