"""Read-only queries behind the dashboard pages, each scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, Select, cast, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from stealth_recovery.notifications.models import NotificationLog, OutboxMessage
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt


def _day(session: Session, column: InstrumentedAttribute[datetime]) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp column, on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    # SQLite keeps naive UTC text: date() reads it as is.
    return func.date(column)


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class DayCount:
    day: date
    key: str
    count: int


def attempts_per_day_by_status(
    session: Session, *, organization_id: int, since: datetime
) -> list[DayCount]:
    """Attempts opened each day since `since`, split by their status now."""
    day = _day(session, RecoveryAttempt.created_at).label("day")
    stmt = (
        select(day, RecoveryAttempt.status, func.count())
        .where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.created_at >= since,
        )
        .group_by(day, RecoveryAttempt.status)
    )
    return [DayCount(_as_date(d), s, n) for d, s, n in session.execute(stmt)]


@dataclass(frozen=True)
class ChannelDayCount:
    day: date
    channel: str
    status: str
    count: int


def messages_per_day(
    session: Session, *, organization_id: int, since: datetime
) -> list[ChannelDayCount]:
    """Messages written each day since `since`, by channel and current delivery status."""
    day = _day(session, NotificationLog.created_at).label("day")
    stmt = (
        select(day, NotificationLog.channel, NotificationLog.status, func.count())
        .where(
            NotificationLog.organization_id == organization_id,
            NotificationLog.created_at >= since,
        )
        .group_by(day, NotificationLog.channel, NotificationLog.status)
    )
    return [ChannelDayCount(_as_date(d), c, s, n) for d, c, s, n in session.execute(stmt)]


def recoveries_by_step(
    session: Session, *, organization_id: int, since: datetime
) -> dict[int, int]:
    """Paid attempts opened since `since`, by how many reminders had gone out when paid."""
    stmt = (
        select(RecoveryAttempt.completed_after_step, func.count())
        .where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.created_at >= since,
            RecoveryAttempt.status == AttemptStatus.completed,
            # A test payment moved no money: it is never a recovery.
            RecoveryAttempt.test_payment.is_(False),
        )
        .group_by(RecoveryAttempt.completed_after_step)
    )
    return {int(step or 0): n for step, n in session.execute(stmt)}


def status_counts(session: Session, *, organization_id: int, since: datetime) -> dict[str, int]:
    """Attempts opened since `since`, by their status now."""
    stmt = (
        select(RecoveryAttempt.status, func.count())
        .where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.created_at >= since,
            RecoveryAttempt.test_payment.is_(False),
        )
        .group_by(RecoveryAttempt.status)
    )
    return {status: n for status, n in session.execute(stmt)}


def recovered_revenue(session: Session, *, organization_id: int, since: datetime) -> dict[str, int]:
    """Amount (minor units) of the paid attempts opened since `since`, by currency."""
    stmt = (
        select(Transaction.currency, func.sum(Transaction.amount_minor))
        .join(RecoveryAttempt, RecoveryAttempt.transaction_id == Transaction.id)
        .where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.created_at >= since,
            RecoveryAttempt.status == AttemptStatus.completed,
            # A test payment moved no money: it is never a recovery.
            RecoveryAttempt.test_payment.is_(False),
        )
        .group_by(Transaction.currency)
        .order_by(func.sum(Transaction.amount_minor).desc())
    )
    return {currency: int(total or 0) for currency, total in session.execute(stmt)}


@dataclass(frozen=True)
class AttemptFilters:
    status: str | None = None
    decline_category: str | None = None
    search: str | None = None
    created_from: date | None = None
    created_to: date | None = None


@dataclass(frozen=True)
class AttemptRow:
    attempt: RecoveryAttempt
    transaction: Transaction


def _filtered(stmt: Select, *, organization_id: int, filters: AttemptFilters) -> Select:
    stmt = stmt.where(RecoveryAttempt.organization_id == organization_id)
    if filters.status == "open":
        stmt = stmt.where(RecoveryAttempt.status.in_(OPEN_STATUSES))
    elif filters.status:
        stmt = stmt.where(RecoveryAttempt.status == filters.status)
    if filters.decline_category:
        stmt = stmt.where(RecoveryAttempt.decline_category == filters.decline_category)
    if filters.search:
        pattern = f"%{filters.search.strip().lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Transaction.customer_email).like(pattern),
                func.lower(Transaction.customer_name).like(pattern),
                func.lower(Transaction.external_ref).like(pattern),
                Transaction.customer_phone.like(pattern),
            )
        )
    if filters.created_from:
        stmt = stmt.where(RecoveryAttempt.created_at >= _utc_midnight(filters.created_from))
    if filters.created_to:
        stmt = stmt.where(
            RecoveryAttempt.created_at < _utc_midnight(filters.created_to, next_day=True)
        )
    return stmt


def _utc_midnight(day: date, *, next_day: bool = False) -> datetime:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if next_day else moment


def list_attempts(
    session: Session,
    *,
    organization_id: int,
    filters: AttemptFilters,
    offset: int,
    limit: int,
) -> tuple[list[AttemptRow], int]:
    """One page of attempts, newest first, and how many match in all."""
    base = select(RecoveryAttempt, Transaction).join(
        Transaction, Transaction.id == RecoveryAttempt.transaction_id
    )
    stmt = (
        _filtered(base, organization_id=organization_id, filters=filters)
        .order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc())
        .offset(offset)
        .limit(limit)
    )
    rows = [AttemptRow(a, t) for a, t in session.execute(stmt)]
    count_stmt = _filtered(
        select(func.count())
        .select_from(RecoveryAttempt)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id),
        organization_id=organization_id,
        filters=filters,
    )
    total = int(session.scalar(count_stmt) or 0)
    return rows, total


def transaction_of(session: Session, attempt: RecoveryAttempt) -> Transaction:
    transaction = session.get(Transaction, attempt.transaction_id)
    assert transaction is not None  # the foreign key cascades: an attempt has its transaction
    return transaction


def failure_of(session: Session, attempt: RecoveryAttempt) -> FailureEvent | None:
    if attempt.failure_event_id is None:
        return None
    return session.get(FailureEvent, attempt.failure_event_id)


def notifications_of(session: Session, attempt: RecoveryAttempt) -> Sequence[NotificationLog]:
    stmt = (
        select(NotificationLog)
        .where(
            NotificationLog.attempt_id == attempt.id,
            NotificationLog.organization_id == attempt.organization_id,
        )
        .order_by(NotificationLog.retry_number, NotificationLog.created_at, NotificationLog.id)
    )
    return list(session.scalars(stmt))


def outbox_messages(
    session: Session, *, organization_id: int, channel: str, limit: int
) -> Sequence[OutboxMessage]:
    """The organization's newest messages kept by the local outbox on one channel."""
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.organization_id == organization_id, OutboxMessage.channel == channel)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    ).all()


def outbox_counts(session: Session, *, organization_id: int) -> dict[str, int]:
    """How many messages the outbox keeps per channel for the organization."""
    stmt = (
        select(OutboxMessage.channel, func.count())
        .where(OutboxMessage.organization_id == organization_id)
        .group_by(OutboxMessage.channel)
    )
    return {channel: n for channel, n in session.execute(stmt)}
