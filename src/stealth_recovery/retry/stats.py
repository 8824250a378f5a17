"""The retry statistics of one organization, read from its daily counters.

Whole UTC days come from `daily_counts` (`stealth_recovery.counters`): one row per day, metric
and shard in use, however many attempts and messages. A `since` inside a day adds an exact
aggregate of that day's rows from `since` to the next midnight, read through the
`(organization_id, created_at)` indexes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from stealth_recovery.counters import repository as counters
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.retry.schemas import RetryStats

_SENT = ("sent", "delivered")
_FAILED = ("failed", "bounced")


@dataclass(frozen=True)
class _Figures:
    total: int = 0
    pending: int = 0
    completed: int = 0
    test_payments: int = 0
    retries: int = 0
    late: int = 0
    sent: int = 0
    failed: int = 0
    kept: int = 0
    unconfirmed: int = 0

    def __add__(self, other: _Figures) -> _Figures:
        return _Figures(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


def _with_prefix(counts: Mapping[str, int], prefix: str) -> int:
    return sum(n for metric, n in counts.items() if metric.startswith(prefix))


def _message_status(counts: Mapping[str, int], statuses: tuple[str, ...]) -> int:
    """Messages of every channel in one of `statuses` (metrics `m:<channel>:<status>`)."""
    return sum(
        n
        for metric, n in counts.items()
        if metric.startswith("m:") and metric.rsplit(":", 1)[-1] in statuses
    )


def _from_counts(counts: Mapping[str, int]) -> _Figures:
    kept = counts.get("m:kept", 0)
    return _Figures(
        total=_with_prefix(counts, "a:s:"),
        pending=counts.get("a:pending", 0),
        completed=counts.get("a:s:completed", 0) - counts.get("a:test:completed", 0),
        test_payments=_with_prefix(counts, "a:test:"),
        retries=counts.get("a:retries", 0),
        late=counts.get("a:late", 0),
        # A message the local outbox kept never reached a customer: counted apart.
        sent=_message_status(counts, _SENT) - kept,
        failed=_message_status(counts, _FAILED),
        kept=kept,
        unconfirmed=_message_status(counts, ("unconfirmed",)),
    )


def _partial_day(
    session: Session, *, organization_id: int, since: datetime, until: datetime
) -> _Figures:
    attempts = attempts_repository.totals(
        session, organization_id=organization_id, since=since, until=until
    )
    messages = logs_repository.totals(
        session, organization_id=organization_id, since=since, until=until
    )
    return _Figures(
        total=attempts.total,
        pending=attempts.pending_retries,
        completed=attempts.completed,
        test_payments=attempts.test_payments,
        retries=attempts.retry_count_sum,
        late=attempts.paid_after_end,
        sent=messages.sent,
        failed=messages.failed,
        kept=messages.kept,
        unconfirmed=messages.unconfirmed,
    )


def _stats(figures: _Figures) -> RetryStats:
    average = figures.retries / figures.total if figures.total else 0.0
    return RetryStats(
        total_attempts=figures.total,
        pending_retries=figures.pending,
        sent_count=figures.sent,
        outbox_count=figures.kept,
        completed_count=figures.completed,
        test_payment_count=figures.test_payments,
        failed_count=figures.failed,
        unconfirmed_count=figures.unconfirmed,
        avg_retry_count=round(average, 2),
        recovered_after_end_count=figures.late,
    )


def stats_from_counts(counts: Mapping[str, int]) -> RetryStats:
    """The /v1/retry/stats figures of counters already read and summed over their days
    (`counters.repository.DailyCounts.totals()`): how the dashboard reuses its one read."""
    return _stats(_from_counts(counts))


def compute_stats(
    session: Session, *, organization_id: int, since: datetime | None = None
) -> RetryStats:
    """The /v1/retry/stats figures of one organization, from its daily counters.

    With `since` (UTC), only attempts opened and messages written from then on count: the
    counters of each whole UTC day after it, plus, when `since` is not a midnight, an exact
    aggregate of its own day's rows from `since` on (bounded by the day, through an index).
    """
    if since is None:
        return _stats(_from_counts(counters.totals(session, organization_id=organization_id)))
    since = since.astimezone(UTC)
    midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
    if since == midnight:
        counts = counters.totals(session, organization_id=organization_id, since=since.date())
        return _stats(_from_counts(counts))
    next_midnight = midnight + timedelta(days=1)
    counts = counters.totals(session, organization_id=organization_id, since=next_midnight.date())
    partial = _partial_day(
        session, organization_id=organization_id, since=since, until=next_midnight
    )
    return _stats(_from_counts(counts) + partial)
