"""Every statement on `recovery_attempts`: lookups, listings, counts, and the named claims.

A claim is a conditional statement whose docstring names the race it prevents and the lock
order it relies on. The row locks on attempts, all taken by the statements of this module:

- the queue's claims (`expire_due`, `cancel_exhausted_due`, `claim_due_steps`) lock with
  `SKIP LOCKED`: they never wait for a row, so they cannot take part in a deadlock;
- the send claim (`lock_for_send`) locks many rows, always in id order, and locks an attempt
  before it writes any of that attempt's log rows;
- every other statement that changes an attempt locks one row (`finish`, `mark_opened`,
  `complete_after_end`, `flag_second_payment`) or several rows in id order (`advance_steps`,
  `defer_steps`); the heartbeat (`renew_leases`) locks the rows it renews as it meets them.

SQLite has one writer at a time (`BEGIN IMMEDIATE`): there the locks are the whole database.
Statements on `notification_logs` live in `notifications.repository`; where they depend on the
attempt's state they take a condition built here (`STEP_HELD`, `step_ended`, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from stealth_recovery.core.database import (
    dialect_of,
    insert_select_where,
    loading_returned,
    one_of_ids,
    returned_row,
)
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import (
    FINAL_STATUSES,
    OPEN_SQL,
    OPEN_STATUSES,
    AttemptStatus,
    RecoveryAttempt,
)

# ---------------------------------------------------------------------------------------------
# Lookups


def get_in_organization(
    session: Session, *, organization_id: int, attempt_id: int
) -> RecoveryAttempt | None:
    """The attempt, if it belongs to the organization (another organization's is unknown)."""
    attempt = session.get(RecoveryAttempt, attempt_id)
    if attempt is None or attempt.organization_id != organization_id:
        return None
    return attempt


def get_open_for_transaction(session: Session, *, transaction_id: int) -> RecoveryAttempt | None:
    """The transaction's open attempt, if any (the partial unique index allows one)."""
    stmt = select(RecoveryAttempt).where(
        RecoveryAttempt.transaction_id == transaction_id,
        RecoveryAttempt.status.in_(OPEN_STATUSES),
    )
    return session.scalar(stmt)


def get_latest_for_transaction(session: Session, *, transaction_id: int) -> RecoveryAttempt | None:
    """The transaction's newest attempt, whatever its state."""
    stmt = (
        select(RecoveryAttempt)
        .where(RecoveryAttempt.transaction_id == transaction_id)
        .order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def get_by_token(session: Session, token: str) -> RecoveryAttempt | None:
    return session.scalar(select(RecoveryAttempt).where(RecoveryAttempt.token == token))


def get_for_failure(session: Session, *, failure: FailureEvent) -> RecoveryAttempt | None:
    """The attempt this failure opened, else the newest attempt of its transaction."""
    opened = session.scalar(
        select(RecoveryAttempt).where(RecoveryAttempt.failure_event_id == failure.id)
    )
    if opened is not None:
        return opened
    return get_latest_for_transaction(session, transaction_id=failure.transaction_id)


def _payment_ids(refs: Sequence[str | None]) -> list[str]:
    return [r for r in dict.fromkeys(refs) if r]


@cache
def _hard_declined() -> Select[RecoveryAttempt]:
    """Attempts stopped by a hard decline of one payment. Bind parameters: `organization_id`,
    `transaction_id`, and `payment_refs` (a list: reference, payment and invoice ids)."""
    organization_id: BindParameter[int] = bindparam("organization_id")
    refs: BindParameter[list[str]] = bindparam("payment_refs", expanding=True)
    same_payment = select(Transaction.id).where(
        Transaction.organization_id == organization_id,
        or_(
            Transaction.external_ref.in_(refs),
            Transaction.psp_payment_id.in_(refs),
            Transaction.psp_invoice_id.in_(refs),
        ),
    )
    return select(RecoveryAttempt).where(
        RecoveryAttempt.organization_id == organization_id,
        RecoveryAttempt.decline_category == DeclineCategory.hard,
        or_(
            RecoveryAttempt.transaction_id == bindparam("transaction_id"),
            RecoveryAttempt.transaction_id.in_(same_payment.scalar_subquery()),
        ),
    )


@cache
def _first_hard_declined() -> Select[RecoveryAttempt]:
    return _hard_declined().order_by(RecoveryAttempt.id).limit(1)


def get_hard_declined(
    session: Session,
    *,
    organization_id: int,
    transaction_id: int,
    refs: Sequence[str | None],
) -> RecoveryAttempt | None:
    """An attempt stopped by a hard decline of this payment: of the transaction itself, or of
    a transaction known by one of these payment ids (reference, payment or invoice id)."""
    params = {
        "organization_id": organization_id,
        "transaction_id": transaction_id,
        "payment_refs": _payment_ids(refs),
    }
    return session.scalar(_first_hard_declined(), params)


def get_by_checkout_session(
    session: Session, *, organization_id: int, checkout_session_id: str
) -> RecoveryAttempt | None:
    stmt = select(RecoveryAttempt).where(
        RecoveryAttempt.organization_id == organization_id,
        RecoveryAttempt.checkout_session_id == checkout_session_id,
    )
    return session.scalar(stmt)


def ended_with_open_checkout(session: Session, *, limit: int) -> Sequence[RecoveryAttempt]:
    """Ended attempts whose Checkout Session has not been closed at Stripe yet, oldest first.

    Read through their partial index; rows another sweeper holds are skipped (PostgreSQL).
    """
    stmt = (
        select(RecoveryAttempt)
        .where(
            RecoveryAttempt.checkout_session_id.is_not(None),
            RecoveryAttempt.checkout_closed_at.is_(None),
            RecoveryAttempt.status.in_(FINAL_STATUSES),
        )
        .order_by(RecoveryAttempt.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def count_due(session: Session, *, now: datetime) -> int:
    """Open attempts whose next step is due and not claimed (a claim pushes it to the lease end).

    One COUNT on the partial index of due open attempts.
    """
    stmt = select(func.count()).where(
        RecoveryAttempt.status.in_(OPEN_STATUSES),
        RecoveryAttempt.next_retry_at <= now,
    )
    return int(session.scalar(stmt) or 0)


# ---------------------------------------------------------------------------------------------
# Listings


@dataclass(frozen=True)
class AttemptFilters:
    """The API's filters (`GET /v1/attempts`)."""

    statuses: Sequence[str] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    transaction_ref: str | None = None
    customer_email: str | None = None


def list_attempts(
    session: Session,
    *,
    organization_id: int,
    filters: AttemptFilters,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[tuple[RecoveryAttempt, Transaction]]:
    """One page of the organization's attempts, newest first, keyed on (created_at, id)."""
    stmt = (
        select(RecoveryAttempt, Transaction)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .where(RecoveryAttempt.organization_id == organization_id)
    )
    if filters.statuses:
        stmt = stmt.where(RecoveryAttempt.status.in_(list(filters.statuses)))
    if filters.created_from is not None:
        stmt = stmt.where(RecoveryAttempt.created_at >= filters.created_from)
    if filters.created_to is not None:
        stmt = stmt.where(RecoveryAttempt.created_at < filters.created_to)
    if filters.transaction_ref is not None:
        stmt = stmt.where(Transaction.external_ref == filters.transaction_ref)
    if filters.customer_email is not None:
        # Local parts are stored as the customer wrote them; people search without caring.
        stmt = stmt.where(func.lower(Transaction.customer_email) == filters.customer_email.lower())
    if after is not None:
        # A row-value comparison: PostgreSQL starts the index scan at the cursor (an OR of the two
        # halves is only a filter, read through every newer row); SQLite serves it the same way.
        stmt = stmt.where(tuple_(RecoveryAttempt.created_at, RecoveryAttempt.id) < after)
    stmt = stmt.order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc()).limit(limit)
    return [(attempt, transaction) for attempt, transaction in session.execute(stmt).tuples()]


@dataclass(frozen=True)
class AttemptSearch:
    """The dashboard's filters: a status (or "open"), a decline category, a free-text search
    over the customer and the reference, and opening days (UTC)."""

    status: str | None = None
    decline_category: str | None = None
    search: str | None = None
    created_from: date | None = None
    created_to: date | None = None


@dataclass(frozen=True)
class AttemptRow:
    attempt: RecoveryAttempt
    transaction: Transaction


def _searched(stmt: Select, *, organization_id: int, search: AttemptSearch) -> Select:
    stmt = stmt.where(RecoveryAttempt.organization_id == organization_id)
    if search.status == "open":
        stmt = stmt.where(RecoveryAttempt.status.in_(OPEN_STATUSES))
    elif search.status:
        stmt = stmt.where(RecoveryAttempt.status == search.status)
    if search.decline_category:
        stmt = stmt.where(RecoveryAttempt.decline_category == search.decline_category)
    if search.search:
        pattern = f"%{search.search.strip().lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Transaction.customer_email).like(pattern),
                func.lower(Transaction.customer_name).like(pattern),
                func.lower(Transaction.external_ref).like(pattern),
                Transaction.customer_phone.like(pattern),
            )
        )
    if search.created_from:
        stmt = stmt.where(RecoveryAttempt.created_at >= _utc_midnight(search.created_from))
    if search.created_to:
        stmt = stmt.where(
            RecoveryAttempt.created_at < _utc_midnight(search.created_to, next_day=True)
        )
    return stmt


def _utc_midnight(day: date, *, next_day: bool = False) -> datetime:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if next_day else moment


def search_attempts(
    session: Session,
    *,
    organization_id: int,
    search: AttemptSearch,
    offset: int,
    limit: int,
) -> tuple[list[AttemptRow], int]:
    """One page of attempts, newest first, and how many match in all."""
    base = select(RecoveryAttempt, Transaction).join(
        Transaction, Transaction.id == RecoveryAttempt.transaction_id
    )
    stmt = (
        _searched(base, organization_id=organization_id, search=search)
        .order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc())
        .offset(offset)
        .limit(limit)
    )
    rows = [AttemptRow(a, t) for a, t in session.execute(stmt)]
    count_stmt = _searched(
        select(func.count())
        .select_from(RecoveryAttempt)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id),
        organization_id=organization_id,
        search=search,
    )
    total = int(session.scalar(count_stmt) or 0)
    return rows, total


# ---------------------------------------------------------------------------------------------
# Aggregates (statistics and the overview)


@dataclass(frozen=True)
class AttemptTotals:
    total: int
    pending_retries: int  # open, with a reminder still to come
    completed: int  # paid, test payments excluded
    test_payments: int
    retry_count_sum: int
    paid_after_end: int


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def totals(
    session: Session, *, organization_id: int, since: datetime, until: datetime
) -> AttemptTotals:
    """The organization's attempt figures for the attempts opened from `since` (included) to
    `until` (excluded), in one aggregate query read through the (organization, created_at)
    index. The same definitions as the daily counters (`counters.definitions`): the stats
    use it for the part of a day the counters cannot split."""
    row = session.execute(
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
            func.coalesce(func.sum(RecoveryAttempt.retry_count), 0),
            _count_where(
                (RecoveryAttempt.status == AttemptStatus.completed)
                & RecoveryAttempt.paid_after_end.is_(True)
            ),
        ).where(
            RecoveryAttempt.organization_id == organization_id,
            RecoveryAttempt.created_at >= since,
            RecoveryAttempt.created_at < until,
        )
    ).one()
    total, pending, completed, test_payments, retries, late = row
    return AttemptTotals(
        total=int(total),
        pending_retries=int(pending),
        completed=int(completed),
        test_payments=int(test_payments),
        retry_count_sum=int(retries),
        paid_after_end=int(late),
    )


# ---------------------------------------------------------------------------------------------
# Opening and ending an attempt


def insert_open(
    session: Session,
    attempt: RecoveryAttempt,
    *,
    unless_hard_declined: Sequence[str | None] | None = None,
) -> RecoveryAttempt | None:
    """Insert a new attempt (built, not added) unless its transaction has an open one; one
    statement, the row returned (no second read). None when nothing was inserted.

    Prevents two racing ingestions of one failure from both opening an attempt: the partial
    unique index on `transaction_id` for open attempts turns the second insert into nothing
    (`ON CONFLICT DO NOTHING`; on PostgreSQL after waiting for the first one's commit), without
    a savepoint. With `unless_hard_declined` (the payment's ids: reference, payment and invoice
    id), nothing is inserted either while an attempt of this payment stopped by a hard decline
    exists (`get_hard_declined`), checked in the same statement. Lock order: the new row only.
    """
    values = {
        column.key: getattr(attempt, column.key)
        for column in RecoveryAttempt.__table__.c
        if column.key in attempt.__dict__
    }
    statement = _insert_open_statement(
        dialect_of(session), tuple(values), unless_hard_declined is not None
    )
    if unless_hard_declined is not None:
        values["payment_refs"] = _payment_ids(unless_hard_declined)
    return returned_row(session, RecoveryAttempt, statement, values)


@cache
def _insert_open_statement(
    dialect: str, names: tuple[str, ...], unless_hard_declined: bool
) -> ExecutableReturnsRows:
    # An attempt opening `cancelled` (a hard decline) is not open, so the index does not stop
    # it: the open attempt is looked for in the statement too.
    condition = ~exists().where(
        RecoveryAttempt.transaction_id == bindparam("transaction_id"),
        RecoveryAttempt.status.in_(OPEN_STATUSES),
    )
    if unless_hard_declined:
        condition = condition & ~_hard_declined().exists()
    statement = insert_select_where(dialect, RecoveryAttempt, names, condition)
    statement = statement.on_conflict_do_nothing(
        # Literal SQL: PostgreSQL infers the partial index from the predicate's text, which a
        # bound parameter (once the statement is prepared) does not match.
        index_elements=["transaction_id"],
        index_where=text(OPEN_SQL),
    )
    return loading_returned(RecoveryAttempt, statement)


def finish(
    session: Session,
    *,
    attempt_id: int,
    status: AttemptStatus,
    at: datetime,
    reason: str | None = None,
    paid_via: str | None = None,
) -> bool:
    """Move an open attempt to a final state; False when it was already final.

    Prevents a payment and a reminder (or two webhooks) racing on the same attempt: the UPDATE
    takes the row lock that the send claim also takes, and only one of them finds it open.
    Lock order: this one row, nothing else.
    """
    values: dict[str, object] = {"status": status, "next_retry_at": None, "updated_at": at}
    if status == AttemptStatus.completed:
        values["completed_at"] = at
        values["completed_after_step"] = RecoveryAttempt.retry_count
        values["paid_via"] = paid_via
    else:
        values["cancelled_at"] = at
        values["cancel_reason"] = reason
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.id == attempt_id, RecoveryAttempt.status.in_(OPEN_STATUSES))
        .values(**values)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def mark_opened(session: Session, *, attempt_id: int, at: datetime) -> bool:
    """Record the first opening of the pay link; later openings change nothing.

    Prevents two openings (two tabs) both recording theirs, and an opening from reopening an
    attempt that was paid meanwhile. Lock order: this one row.
    """
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status.in_((AttemptStatus.created, AttemptStatus.sent)),
            RecoveryAttempt.opened_at.is_(None),
        )
        .values(status=AttemptStatus.opened, opened_at=at, updated_at=at)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def complete_after_end(session: Session, *, attempt_id: int, at: datetime, paid_via: str) -> bool:
    """A payment for an attempt that had ended (cancelled, expired): completed, marked as paid
    after the end. False when the attempt is open or already completed.

    Prevents two reports of late money both completing the attempt. Lock order: this one row.
    """
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status.in_((AttemptStatus.cancelled, AttemptStatus.expired)),
        )
        .values(
            status=AttemptStatus.completed,
            completed_at=at,
            completed_after_step=RecoveryAttempt.retry_count,
            next_retry_at=None,
            paid_after_end=True,
            paid_via=paid_via,
            updated_at=at,
        )
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def flag_second_payment(session: Session, *, attempt_id: int, at: datetime, ref: str) -> bool:
    """Record the first extra payment of a completed attempt; False if one is already flagged.

    Prevents two extra payments racing from overwriting each other's reference. Lock order:
    this one row.
    """
    result = session.execute(
        update(RecoveryAttempt)
        .where(
            RecoveryAttempt.id == attempt_id,
            RecoveryAttempt.status == AttemptStatus.completed,
            RecoveryAttempt.second_payment_at.is_(None),
        )
        .values(second_payment_at=at, second_payment_ref=ref, updated_at=at)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


def expire_past_deadline(session: Session, *, now: datetime) -> list[int]:
    """Every open attempt past `expires_at` becomes `expired` (the daily cleanup); returns
    their ids.

    A row being paid at the same moment is waited for, then re-checked: a payment that commits
    first keeps its `completed`.
    """
    result = session.execute(
        update(RecoveryAttempt)
        .where(RecoveryAttempt.status.in_(OPEN_STATUSES), RecoveryAttempt.expires_at <= now)
        .values(status=AttemptStatus.expired, next_retry_at=None, updated_at=now)
        .returning(RecoveryAttempt.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


# ---------------------------------------------------------------------------------------------
# The due-attempt queue


@dataclass(frozen=True)
class ClaimedStep:
    """One reminder step a worker is to send: attempt id, 0-based retry number, and the claim
    token the queue pass wrote as the lease owner (None: not claimed by a queue pass)."""

    attempt_id: int
    retry_number: int
    claim: str | None = None


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        RecoveryAttempt.status.in_(OPEN_STATUSES),
        RecoveryAttempt.next_retry_at <= now,
    ]


def expire_due(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Expire due attempts whose link has run out, so the queue never sends for them; returns
    their ids.

    Prevents a reminder for a dead link. Lock order: none waited for — rows another claimer
    holds are skipped (`SKIP LOCKED`) and handled on a later pass.
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
    return list(result.scalars())


def cancel_exhausted_due(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Cancel attempts whose last reminder went out and whose grace period has passed; returns
    their ids.

    Prevents an attempt staying open forever after its last reminder. Lock order: none waited
    for (`SKIP LOCKED`, like `expire_due`).
    """
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
    return list(result.scalars())


def claim_due_steps(
    session: Session, *, now: datetime, limit: int, lease: timedelta, claim: str | None = None
) -> list[ClaimedStep]:
    """Claim up to `limit` due reminder steps under a lease owned by `claim` (a token).

    A due row is one whose lease has ended: its former owner, if any, stopped renewing it, and
    writing the new owner fences that owner off (its hand-overs and records are refused).

    Prevents two schedulers dispatching the same step: rows another transaction is claiming
    are skipped (`FOR UPDATE SKIP LOCKED`; SQLite has a single writer), and a claimed row's
    `next_retry_at` moves to the end of the lease, so it is not due again unless the worker
    that took it dies before finishing the step. Lock order: none waited for (`SKIP LOCKED`).

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


def lease_step(attempt: RecoveryAttempt, *, owner: str, until: datetime) -> None:
    """Lease the attempt's next step to `owner` until `until`; written at the caller's flush.

    `retry_now` and the send claim call it: `next_retry_at` is the lease end, so a step lost
    before it is recorded comes due again then, and `owner` fences any former holder off. The
    caller has checked the attempt under its row lock (the send claim) or in the request
    that asked for it (retry now); the write takes this one row's lock.
    """
    attempt.next_retry_at = until
    attempt.lease_owner = owner


def make_due(attempt: RecoveryAttempt, *, at: datetime) -> None:
    """Make the attempt's next step due at `at`; written at the caller's flush (retry now on
    the embedded layout: the scheduler's next tick claims it like any due step)."""
    attempt.next_retry_at = at


@dataclass(frozen=True, slots=True)
class SendCandidate:
    """An attempt as the send claim reads it under its row lock, with what its messages show
    of its transaction and merchant (plain values: no ORM object per row)."""

    id: int
    organization_id: int
    status: str
    retry_count: int
    next_retry_at: datetime | None
    lease_owner: str | None
    expires_at: datetime
    token: str
    max_retries: int
    initial_delay_minutes: int
    backoff_multiplier: float
    max_delay_minutes: int
    enabled_channels: list[str]
    decline_category: str
    window_start_minute: int | None
    window_end_minute: int | None
    window_days: int | None
    window_skip_holidays: bool
    customer_email: str | None
    customer_phone: str | None
    customer_name: str | None
    customer_locale: str
    customer_timezone: str
    amount_minor: int
    currency: str
    merchant_name: str


_attempt_table = cast(Table, RecoveryAttempt.__table__)
_attempts = _attempt_table.c


# The columns of `SendCandidate`, in its order: the attempt's, the transaction's, the merchant's.
_CANDIDATE_ATTEMPT_COLUMNS = (
    "id",
    "organization_id",
    "status",
    "retry_count",
    "next_retry_at",
    "lease_owner",
    "expires_at",
    "token",
    "max_retries",
    "initial_delay_minutes",
    "backoff_multiplier",
    "max_delay_minutes",
    "enabled_channels",
    "decline_category",
    "window_start_minute",
    "window_end_minute",
    "window_days",
    "window_skip_holidays",
)
_CANDIDATE_TRANSACTION_COLUMNS = (
    "customer_email",
    "customer_phone",
    "customer_name",
    "customer_locale",
    "customer_timezone",
    "amount_minor",
    "currency",
)


@cache
def _lock_for_send_statement(dialect: str) -> Select[Any]:
    transactions = cast(Table, Transaction.__table__)
    organizations = cast(Table, Organization.__table__)
    a, t = _attempts, transactions.c
    return (
        select(
            *(a[name] for name in _CANDIDATE_ATTEMPT_COLUMNS),
            *(t[name] for name in _CANDIDATE_TRANSACTION_COLUMNS),
            organizations.c.name,
        )
        .select_from(
            _attempt_table.join(transactions, t.id == a.transaction_id).join(
                organizations, organizations.c.id == a.organization_id
            )
        )
        .where(one_of_ids(a.id, "ids", dialect))
        .order_by(a.id)
        .with_for_update(of=_attempt_table)
    )


def lock_for_send(session: Session, *, attempt_ids: Sequence[int]) -> list[SendCandidate]:
    """The send claim's lock and re-read: the attempts, with their transactions' customer and
    amount and their merchants' names, in id order.

    Prevents chasing a paid customer: the rows are locked `FOR UPDATE` and read again after
    the lock is granted, and completion (`finish`) takes the same row lock, so the caller sees
    either the payment or nothing of it (then the payment waits for the caller's commit).
    Lock order: the attempts in id order, before any of their log rows — one order for every
    worker, so two workers preparing overlapping steps never deadlock.
    """
    if not attempt_ids:
        return []
    statement = _lock_for_send_statement(session.get_bind().dialect.name)
    rows = session.execute(statement, {"ids": sorted(attempt_ids)})
    return [SendCandidate(*row) for row in rows]


def lease_steps(
    session: Session, *, attempt_ids: Sequence[int], owner: str, until: datetime, now: datetime
) -> None:
    """The send claim's lease: the next step of each of these attempts (locked and checked by
    the caller, `lock_for_send`) is `owner`'s until `until`, in one statement.

    As `lease_step`: `next_retry_at` is the lease end, so a step lost before it is recorded
    comes due again then, and `owner` fences any former holder off.
    """
    if attempt_ids:
        session.execute(
            _lease_steps_statement(session.get_bind().dialect.name),
            {"ids": list(attempt_ids), "owner": owner, "until": until, "now": now},
        )


@cache
def _lease_steps_statement(dialect: str) -> Update:
    return (
        update(_attempt_table)
        .where(one_of_ids(_attempts.id, "ids", dialect))
        .values(
            next_retry_at=bindparam("until"),
            lease_owner=bindparam("owner"),
            updated_at=bindparam("now"),
        )
    )


def expire_locked(session: Session, *, attempt_ids: Sequence[int], now: datetime) -> None:
    """Expire open attempts the send claim has locked and found past their link's expiry."""
    if attempt_ids:
        session.execute(
            update(_attempt_table)
            .where(_attempts.id.in_(list(attempt_ids)))
            .values(
                status=AttemptStatus.expired.value,
                next_retry_at=None,
                lease_owner=None,
                updated_at=now,
            )
        )


def renew_leases(
    session: Session, *, attempt_ids: list[int], owners: list[str], until: datetime
) -> int:
    """Heartbeat: push the lease of steps still held by one of `owners` to `until`.

    Prevents a live worker's step coming due while it works. A step another worker has claimed
    since (a new owner) is not touched. Lock order: the rows as the scan meets them, not
    necessarily id order; it holds no other lock, and the only writers it can wait for are
    the record of these steps and a payment. Should it and a record of the same steps ever
    lock in crossed order, PostgreSQL ends one of them: the record is retried, the heartbeat
    beats again a third of a lease later.
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


# Core statements run with one parameter set per row (executemany). The bound names differ from
# the column names, which SQLAlchemy reserves for the SET clause.
# Literal values: an expanding IN cannot run once per parameter set.
_OPEN_LITERALS: list[Any] = [literal_column(f"'{status}'") for status in OPEN_STATUSES]
_STILL_OURS = (
    _attempts.id == bindparam("b_attempt_id"),
    _attempts.retry_count == bindparam("b_step", type_=Integer),
    _attempts.status.in_(_OPEN_LITERALS),
    _attempts.lease_owner == bindparam("b_owner"),
)
# A step with a transient failure: due again after the backoff, lease released.
_DEFER = (
    update(_attempt_table)
    .where(*_STILL_OURS)
    .values(next_retry_at=bindparam("b_next_at"), lease_owner=None, updated_at=bindparam("b_now"))
)


def _advance(any_sent: bool) -> Update:
    values: dict[str, Any] = {
        "retry_count": bindparam("b_step", type_=Integer) + 1,
        "last_retry_at": bindparam("b_now"),
        "next_retry_at": bindparam("b_next_at"),
        "lease_owner": None,
        "updated_at": bindparam("b_now"),
    }
    if any_sent:
        # The first reminder out moves a new attempt to `sent`.
        values["status"] = case(
            (_attempts.status == AttemptStatus.created, AttemptStatus.sent.value),
            else_=_attempts.status,
        )
    return update(_attempt_table).where(*_STILL_OURS).values(**values)


_ADVANCE_SENT = _advance(any_sent=True)
_ADVANCE_NOT_SENT = _advance(any_sent=False)


@dataclass(frozen=True)
class StepMove:
    """Where one recorded step moves its attempt: `step` is the 0-based reminder the owner
    held, `next_at` when the attempt is next due."""

    attempt_id: int
    step: int
    next_at: datetime


def _execute_moves(
    session: Session, stmt: Update, moves: Sequence[StepMove], *, owner: str, now: datetime
) -> int:
    if not moves:
        return 0
    params = [
        {
            "b_attempt_id": move.attempt_id,
            "b_step": move.step,
            "b_next_at": move.next_at,
            "b_now": now,
            "b_owner": owner,
        }
        for move in sorted(moves, key=lambda move: move.attempt_id)
    ]
    return int(session.execute(stmt, params).rowcount or 0)  # type: ignore[attr-defined]


def advance_steps(
    session: Session, *, moves: Sequence[StepMove], any_sent: bool, owner: str, now: datetime
) -> int:
    """Move each attempt past its recorded step: `retry_count + 1`, `last_retry_at = now`, the
    next due time, the lease released (and `sent` after the first message out when `any_sent`).
    Returns the rows moved.

    Prevents a late write undoing what happened meanwhile: only an attempt still open, still
    at that step and still leased by `owner` moves, so a payment that landed while the message
    was in flight is never undone and a former owner's record is refused (fencing). Lock
    order: the rows in id order, after the record's log rows — the reverse of the send claim.
    The two meet only when a step passed from the recorder to a new owner; a queue claim has
    written its token then, so this statement does not match that row and does not wait for
    it. Only a send claim made without a claim token (`ClaimedStep.claim` None), after the
    lease ran out, can cross them, and PostgreSQL then ends one transaction: a record is
    retried until written, a failed send claim comes due again after its lease.
    """
    stmt = _ADVANCE_SENT if any_sent else _ADVANCE_NOT_SENT
    return _execute_moves(session, stmt, moves, owner=owner, now=now)


def defer_steps(session: Session, *, moves: Sequence[StepMove], owner: str, now: datetime) -> int:
    """Make each step due again at its `next_at` without advancing (a transient provider
    failure), releasing the lease. Returns the rows moved.

    Same fencing and lock order as `advance_steps`.
    """
    return _execute_moves(session, _DEFER, moves, owner=owner, now=now)


def recorded_at(session: Session, *, attempt_ids: Sequence[int], at: datetime) -> list[int]:
    """Of these attempts, those whose last step was recorded at `at`: the advances of one
    record that matched (a fenced-off owner's did not)."""
    if not attempt_ids:
        return []
    return list(
        session.scalars(
            select(RecoveryAttempt.id).where(
                RecoveryAttempt.id.in_(attempt_ids), RecoveryAttempt.last_retry_at == at
            )
        )
    )


def with_transactions(
    session: Session, *, attempt_ids: Sequence[int]
) -> list[tuple[RecoveryAttempt, Transaction]]:
    """These attempts with their transactions, read afresh (what their webhook events show)."""
    rows = session.execute(
        select(RecoveryAttempt, Transaction)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .where(RecoveryAttempt.id.in_(attempt_ids))
        .execution_options(populate_existing=True)
    ).tuples()
    return list(rows)


# ---------------------------------------------------------------------------------------------
# Conditions on a log row's attempt, for the statements of `notifications.repository`


# The log row's attempt is open and its step leased by the owner bound as `b_owner` beyond
# the time bound as `b_now`: one condition object, so the statements that use it are built once.
STEP_HELD = exists().where(
    _attempts.id == NotificationLog.attempt_id,
    _attempts.lease_owner == bindparam("b_owner"),
    _attempts.status.in_(_OPEN_LITERALS),
    _attempts.next_retry_at > bindparam("b_now", type_=RecoveryAttempt.next_retry_at.type),
)


# The log row's attempt is leased by the owner bound as `b_owner` (one condition object, so
# the statements that use it are built once).
STEP_LEASED = exists().where(
    _attempts.id == NotificationLog.attempt_id, _attempts.lease_owner == bindparam("b_owner")
)


def step_ended() -> ColumnElement[bool]:
    """The log row's attempt has ended, or has moved past the row's step."""
    return exists().where(
        RecoveryAttempt.id == NotificationLog.attempt_id,
        or_(
            not_(RecoveryAttempt.status.in_(OPEN_STATUSES)),
            RecoveryAttempt.retry_count > NotificationLog.retry_number,
        ),
    )
