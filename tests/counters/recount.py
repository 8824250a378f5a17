"""The daily counters recounted in Python from the rows themselves: what every counter must
hold, written from the figures' definitions, independently of the SQL that keeps them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.counters.models import DailyCount
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import OPEN_STATUSES, RecoveryAttempt

Key = tuple[int, date, str]


def expected_counts(session: Session) -> dict[Key, int]:
    """Every (organization, UTC day, metric) with a non-zero count, from the rows."""
    out: Counter[Key] = Counter()
    rows = session.execute(
        select(RecoveryAttempt, Transaction.currency, Transaction.amount_minor)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .execution_options(populate_existing=True)
    ).tuples()
    for attempt, currency, amount in rows:
        day = attempt.created_at.astimezone(UTC).date()

        def add(metric: str, n: int = 1) -> None:
            out[(attempt.organization_id, day, metric)] += n  # noqa: B023

        add(f"a:s:{attempt.status}")
        if attempt.test_payment:
            add(f"a:test:{attempt.status}")
        if (
            attempt.status in OPEN_STATUSES
            and attempt.next_retry_at is not None
            and attempt.retry_count < attempt.max_retries
        ):
            add("a:pending")
        if attempt.status == "completed" and attempt.paid_after_end:
            add("a:late")
        add("a:retries", attempt.retry_count)
        if attempt.status == "completed" and not attempt.test_payment:
            add(f"a:step:{attempt.completed_after_step or 0}")
            add(f"a:rev:{currency}", amount)
    logs = session.scalars(select(NotificationLog).execution_options(populate_existing=True)).all()
    for log in logs:
        day = log.created_at.astimezone(UTC).date()
        out[(log.organization_id, day, f"m:{log.channel}:{log.status}")] += 1
        if log.provider == "outbox" and log.status in ("sent", "delivered"):
            out[(log.organization_id, day, "m:kept")] += 1
    return {key: n for key, n in out.items() if n}


def counted(session: Session) -> dict[Key, int]:
    """What `daily_counts` holds, shards summed, zeros left out."""
    rows = session.execute(
        select(
            DailyCount.organization_id, DailyCount.day, DailyCount.metric, func.sum(DailyCount.n)
        ).group_by(DailyCount.organization_id, DailyCount.day, DailyCount.metric)
    ).tuples()
    result: dict[Key, int] = {}
    for organization_id, day, metric, n in rows:
        if n:
            as_date = date.fromisoformat(day) if isinstance(day, str) else day
            result[(organization_id, as_date, metric)] = int(n)
    return result
