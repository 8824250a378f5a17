"""Every statement on `notification_logs`, and the held delivery statuses of callbacks.

Log rows are written by the engine (`pending` before any provider call, `handing_over` right
before it, then the outcome) and by delivery callbacks (forward only). Where a statement
depends on the state of the row's attempt, the caller passes that condition, built by
`recovery.repository` (this package sits below `recovery`).

Lock order: none of these statements locks an attempt row (conditions on the attempt are
reads). The send claim locks its attempts first and then writes their log rows; the hand-over
mark, the settling and the callbacks hold no attempt lock; the record writes the outcomes and
then moves its attempts (`recovery.repository.advance_steps` says why that cannot deadlock
with a send claim in practice).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from stealth_recovery.core.database import one_of_ids
from stealth_recovery.notifications.models import (
    STATUS_RANK,
    UNSETTLED_STATUSES,
    HeldDeliveryStatus,
    NotificationLog,
    NotificationStatus,
)
from stealth_recovery.notifications.outbox import PROVIDER as OUTBOX

# Advisory locks (PostgreSQL) that order a callback's hold against the record of the same
# message id: (namespace, bucket), the bucket a hash of (provider, id), so a record of
# thousands of messages takes at most MESSAGE_LOCK_BUCKETS locks.
MESSAGE_LOCK_NAMESPACE = 0x5352_0011
MESSAGE_LOCK_BUCKETS = 64
_LOCK_BUCKETS = text(
    "SELECT pg_advisory_xact_lock(:namespace, b) FROM ("
    "SELECT DISTINCT unnest(CAST(:buckets AS integer[])) AS b ORDER BY b) AS ordered"
)


_log_table = cast(Table, NotificationLog.__table__)
_logs = _log_table.c


def find_by_provider_message(
    session: Session, *, provider: str, provider_message_id: str
) -> NotificationLog | None:
    """The log row a provider's message id belongs to (ids are unique per provider)."""
    return session.scalars(
        select(NotificationLog)
        .where(
            NotificationLog.provider == provider,
            NotificationLog.provider_message_id == provider_message_id,
        )
        .limit(1)
    ).first()


def advance_status(
    session: Session,
    *,
    log_id: int,
    status: NotificationStatus,
    at: datetime,
    error_message: str | None = None,
) -> bool:
    """Move a log row to `status` only from a lower-ranked status; True when it moved.

    Race prevented: two callbacks for the same message handled at once (Twilio retrying, or
    `delivered` and `failed` crossing) each read the row and both write. The conditional UPDATE
    lets only a forward move land, so a status is never lowered or overwritten sideways.
    """
    rank = STATUS_RANK[status]
    lower = [s.value for s in NotificationStatus if STATUS_RANK[s] < rank]
    values: dict[str, object] = {"status": status.value, "updated_at": at}
    if status == NotificationStatus.delivered:
        values["delivered_at"] = at
    else:
        values["failed_at"] = at
        values["error_message"] = error_message
    result = session.execute(
        update(NotificationLog)
        .where(NotificationLog.id == log_id, NotificationLog.status.in_(lower))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return bool(getattr(result, "rowcount", 0) == 1)


def lock_messages(session: Session, messages: Iterable[tuple[str, str]]) -> None:
    """Take the transaction's advisory locks for these (provider, message id) pairs.

    Race prevented: a callback for a message id not recorded yet, and the record of that id,
    run at once; each reads before the other commits, so the callback is held and the record
    finds nothing held: the status would wait forever. Both sides take the id's lock before
    reading, and keep it to their commit: whichever comes second sees what the first wrote
    (each statement reads what is committed, under READ COMMITTED). Locks are taken in
    ascending bucket order by every caller, so they never deadlock. SQLite needs none: its
    writers run one at a time (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    buckets = sorted(
        {
            zlib.crc32(f"{provider}\0{message_id}".encode()) % MESSAGE_LOCK_BUCKETS
            for provider, message_id in messages
        }
    )
    if buckets:
        session.execute(_LOCK_BUCKETS, {"namespace": MESSAGE_LOCK_NAMESPACE, "buckets": buckets})


def hold_status(
    session: Session,
    *,
    provider: str,
    provider_message_id: str,
    status: NotificationStatus,
    error_message: str | None,
    occurred_at: datetime | None,
    now: datetime,
) -> None:
    """Keep a status for a message id no log row carries yet."""
    session.add(
        HeldDeliveryStatus(
            provider=provider,
            provider_message_id=provider_message_id,
            status=status.value,
            error_message=error_message,
            occurred_at=occurred_at,
            received_at=now,
        )
    )
    session.flush()


def prune_held(session: Session, *, received_before: datetime) -> int:
    """Drop held statuses received before the given time; how many went."""
    result = session.execute(
        delete(HeldDeliveryStatus)
        .where(HeldDeliveryStatus.received_at < received_before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def held_for_recorded(
    session: Session, messages: Sequence[tuple[str, str]]
) -> list[tuple[HeldDeliveryStatus, int]]:
    """Held statuses of these (provider, message id) pairs whose log row now exists, with the
    row's id, oldest first.

    Runs on every record of the engine. The held table only has the few statuses waiting for
    their record (and is pruned after a day), so it is joined whole to the log's (provider, message
    id) index and filtered here: the cost follows the held rows, not the batch size.
    """
    wanted = set(messages)
    rows = session.execute(
        select(HeldDeliveryStatus, NotificationLog.id)
        .join(
            NotificationLog,
            (NotificationLog.provider == HeldDeliveryStatus.provider)
            & (NotificationLog.provider_message_id == HeldDeliveryStatus.provider_message_id),
        )
        .order_by(HeldDeliveryStatus.id)
    ).all()
    return [
        (held, log_id)
        for held, log_id in rows
        if (held.provider, held.provider_message_id) in wanted
    ]


def delete_held(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(
            delete(HeldDeliveryStatus)
            .where(HeldDeliveryStatus.id.in_(ids))
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------------------------------------
# Reading an attempt's messages


def logs_of_attempt(
    session: Session, *, organization_id: int, attempt_id: int, by_step: bool = False
) -> list[NotificationLog]:
    """The attempt's message log: newest first, or with `by_step` step by step, oldest first."""
    order = (
        (NotificationLog.retry_number, NotificationLog.created_at, NotificationLog.id)
        if by_step
        else (NotificationLog.created_at.desc(), NotificationLog.id.desc())
    )
    stmt = (
        select(NotificationLog)
        .where(
            NotificationLog.attempt_id == attempt_id,
            NotificationLog.organization_id == organization_id,
        )
        .order_by(*order)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class StepLog:
    """A log row as the send claim reads it (plain values: no ORM object per row)."""

    id: int
    attempt_id: int
    retry_number: int
    channel: str
    status: str
    created_at: datetime
    send_attempts: int


@cache
def _logs_of_attempts_statement(dialect: str) -> Select[Any]:
    return select(
        *(_logs[name] for name in ("id", "attempt_id", "retry_number", "channel")),
        *(_logs[name] for name in ("status", "created_at", "send_attempts")),
    ).where(one_of_ids(_logs.attempt_id, "ids", dialect))


def logs_of_attempts(session: Session, *, attempt_ids: Sequence[int]) -> list[StepLog]:
    """Every log row of these attempts (the send claim reads them under the attempts' locks)."""
    statement = _logs_of_attempts_statement(session.get_bind().dialect.name)
    return [StepLog(*row) for row in session.execute(statement, {"ids": sorted(attempt_ids)})]


def bounced_among(session: Session, *, log_ids: Sequence[int]) -> list[NotificationLog]:
    """The rows of these ids that are `bounced` now, read afresh (their webhook events)."""
    return list(
        session.scalars(
            select(NotificationLog)
            .where(
                NotificationLog.id.in_(log_ids),
                NotificationLog.status == NotificationStatus.bounced,
            )
            .execution_options(populate_existing=True)
        )
    )


# ---------------------------------------------------------------------------------------------
# Aggregates (statistics and the overview)

_SENT = (NotificationStatus.sent, NotificationStatus.delivered)
_FAILED = (NotificationStatus.failed, NotificationStatus.bounced)


@dataclass(frozen=True)
class MessageTotals:
    sent: int  # accepted or delivered by a provider (the outbox's excluded)
    failed: int  # failed or bounced
    kept: int  # kept by the local outbox: never reached a customer
    unconfirmed: int


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def totals(
    session: Session, *, organization_id: int, since: datetime, until: datetime
) -> MessageTotals:
    """The organization's message figures for the messages written from `since` (included) to
    `until` (excluded), in one aggregate query read through the (organization, created_at)
    index. The same definitions as the daily counters (`counters.definitions`)."""
    sent, failed, kept, unconfirmed = session.execute(
        select(
            # A message the local outbox kept never reached a customer: counted apart.
            _count_where(NotificationLog.status.in_(_SENT) & (NotificationLog.provider != OUTBOX)),
            _count_where(NotificationLog.status.in_(_FAILED)),
            _count_where(NotificationLog.status.in_(_SENT) & (NotificationLog.provider == OUTBOX)),
            _count_where(NotificationLog.status == NotificationStatus.unconfirmed),
        ).where(
            NotificationLog.organization_id == organization_id,
            NotificationLog.created_at >= since,
            NotificationLog.created_at < until,
        )
    ).one()
    return MessageTotals(
        sent=int(sent), failed=int(failed), kept=int(kept), unconfirmed=int(unconfirmed)
    )


# ---------------------------------------------------------------------------------------------
# The engine's writes: the send claim's rows, the hand-over mark, the outcomes, the settling

_LOG_COLUMNS = (
    "organization_id",
    "attempt_id",
    "retry_number",
    "channel",
    "recipient",
    "provider",
    "status",
    "error_message",
    "failed_at",
    "send_attempts",
)
_PG_ARRAY_TYPES = {
    "organization_id": "integer[]",
    "attempt_id": "integer[]",
    "retry_number": "integer[]",
    "send_attempts": "integer[]",
    "failed_at": "timestamptz[]",
}
# One statement for a whole chunk on PostgreSQL: the rows travel as one array per column, so
# the statement text is the same for every chunk (prepared once, no per-row SQL to build).
_PG_INSERT_LOGS = text(
    "INSERT INTO notification_logs ("
    + ", ".join(_LOG_COLUMNS)
    + ", created_at, updated_at) SELECT "
    + ", ".join(f"t.{c}" for c in _LOG_COLUMNS)
    + ", :now, :now FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_ARRAY_TYPES.get(c, 'text[]')})" for c in _LOG_COLUMNS)
    + ") AS t("
    + ", ".join(_LOG_COLUMNS)
    + ") ON CONFLICT (attempt_id, retry_number, channel) DO NOTHING"
    " RETURNING id, attempt_id, channel"
)


def insert_logs(
    session: Session, rows: list[dict[str, Any]], now: datetime
) -> list[tuple[int, int, str]]:
    """Insert the send claim's log rows (keys: the log columns above); returns (id, attempt id,
    channel) of the rows written.

    Prevents a step's message being written, and so sent, twice: a row whose (attempt, retry
    number, channel) exists already is skipped (`ON CONFLICT DO NOTHING`), so any repeat of a
    step is a no-op. Lock order: the caller holds the attempts' row locks (`lock_for_send`);
    the new rows come after them.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        arrays = {c: [row[c] for row in rows] for c in _LOG_COLUMNS}
        result = session.execute(_PG_INSERT_LOGS, {**arrays, "now": now})
    else:
        result = session.execute(
            sqlite.insert(NotificationLog)
            .values([{**row, "created_at": now, "updated_at": now} for row in rows])
            .on_conflict_do_nothing(index_elements=["attempt_id", "retry_number", "channel"])
            .returning(NotificationLog.id, NotificationLog.attempt_id, NotificationLog.channel)
        )
    return [(r[0], r[1], r[2]) for r in result]


INTERRUPTED = "outcome unknown: its worker stopped during the hand-over; not sent again"


def mark_interrupted(session: Session, *, log_ids: Sequence[int], now: datetime) -> None:
    """Rows their former owner left `handing_over`: the provider may have them, so they
    become `unconfirmed` and are never sent again."""
    if log_ids:
        session.execute(
            update(_log_table)
            .where(_logs.id.in_(list(log_ids)))
            .values(
                status=NotificationStatus.unconfirmed.value,
                error_message=INTERRUPTED,
                updated_at=now,
            )
        )


def count_another_try(session: Session, *, log_ids: Sequence[int], now: datetime) -> None:
    """`pending` rows taken to their provider again: one more send attempt each."""
    if log_ids:
        session.execute(
            update(_log_table)
            .where(_logs.id.in_(list(log_ids)))
            .values(send_attempts=_logs.send_attempts + 1, updated_at=now)
        )


def mark_handing_over(
    session: Session,
    *,
    log_ids: list[int],
    now: datetime,
    owner: str,
    step_held: ColumnElement[bool],
) -> set[int]:
    """Mark messages as being handed over; returns the ids allowed to go to the provider.

    `step_held` is the condition on the row's attempt (`recovery.repository.STEP_HELD`): open,
    and its step leased by the owner bound as `b_owner` beyond the time bound as `b_now`
    (given here as `owner` and `now`). One statement makes both checks immediately before the
    provider call, so it prevents two races: a payment committed before this statement began
    withholds the message, and a worker whose lease passed to another is fenced off. A row
    another worker settled (unconfirmed, cancelled) is not `pending` any more and is refused.
    Re-marking a row this owner marked already (a quick retry after a refused DATA) is
    allowed. Lock order: the log rows only; the attempt is read, not locked.
    """
    if not log_ids:
        return set()
    statement = _mark_handing_over_statement(session.get_bind().dialect.name, step_held)
    result = session.execute(statement, {"ids": log_ids, "b_now": now, "b_owner": owner})
    return {row[0] for row in result}


@cache
def _mark_handing_over_statement(dialect: str, step_held: ColumnElement[bool]) -> Update:
    unsettled: list[Any] = [literal_column(f"'{status}'") for status in UNSETTLED_STATUSES]
    return (
        update(_log_table)
        .where(one_of_ids(_logs.id, "ids", dialect), _logs.status.in_(unsettled), step_held)
        .values(status=NotificationStatus.handing_over.value, updated_at=bindparam("b_now"))
        .returning(_logs.id)
    )


@dataclass(frozen=True)
class Outcome:
    """What a provider call ended in, for one log row (`pending` again after a transient
    failure)."""

    log_id: int
    status: str
    provider_message_id: str | None
    error_message: str | None
    sent_at: datetime | None
    failed_at: datetime | None


_OUTCOME_VALUES: dict[str, Any] = {
    "status": bindparam("b_status"),
    "provider_message_id": bindparam("b_provider_message_id"),
    "error_message": bindparam("b_error_message"),
    "sent_at": bindparam("b_sent_at"),
    "failed_at": bindparam("b_failed_at"),
    "updated_at": bindparam("b_now"),
}
# PostgreSQL: every outcome of a record in one parameter set, an array per column.
_OUTCOME_ROWS = (
    func.unnest(
        bindparam("ids", type_=ARRAY(Integer)),
        bindparam("statuses", type_=ARRAY(String)),
        bindparam("message_ids", type_=ARRAY(String)),
        bindparam("errors", type_=ARRAY(String)),
        bindparam("sent", type_=ARRAY(DateTime(timezone=True))),
        bindparam("failed", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued(
        column("id", Integer),
        column("status", String),
        column("provider_message_id", String),
        column("error_message", String),
        column("sent_at", DateTime(timezone=True)),
        column("failed_at", DateTime(timezone=True)),
    )
    .render_derived(name="outcome")
)
# The outcome of a message this worker handed over is a fact: it is written even if the step
# has changed hands since (it turns the next owner's `unconfirmed` into what the provider said).
_HANDED_OVER_STATUSES: list[Any] = [
    literal_column(f"'{s}'")
    for s in (NotificationStatus.handing_over, NotificationStatus.unconfirmed)
]
_FENCED_STATUSES: list[Any] = [
    literal_column(f"'{s}'") for s in (NotificationStatus.pending, NotificationStatus.handing_over)
]


@cache
def _outcomes_statement(dialect: str, fenced_by: ColumnElement[bool] | None) -> Update:
    """The outcome write: for rows still handed over (`fenced_by` None) or, for the others,
    while `fenced_by` holds. PostgreSQL takes the arrays of `_OUTCOME_ROWS` (one statement per
    record); elsewhere one parameter set per row (executemany)."""
    statuses = _HANDED_OVER_STATUSES if fenced_by is None else _FENCED_STATUSES
    fence = [] if fenced_by is None else [fenced_by]
    if dialect != "postgresql":
        return (
            update(_log_table)
            .where(_logs.id == bindparam("b_log_id"), _logs.status.in_(statuses), *fence)
            .values(**_OUTCOME_VALUES)
        )
    rows = _OUTCOME_ROWS.c
    return (
        update(_log_table)
        .where(_logs.id == rows.id, _logs.status.in_(statuses), *fence)
        .values(
            status=rows.status,
            provider_message_id=rows.provider_message_id,
            error_message=rows.error_message,
            sent_at=rows.sent_at,
            failed_at=rows.failed_at,
            updated_at=bindparam("b_now"),
        )
    )


def write_outcomes(
    session: Session,
    *,
    handed_over: Sequence[Outcome],
    fenced: Sequence[Outcome],
    owner: str,
    now: datetime,
    step_leased: ColumnElement[bool],
) -> None:
    """Write each message's outcome: one statement for each of the two kinds on PostgreSQL
    (the rows as arrays), one parameter set per row elsewhere.

    `handed_over`: messages this owner handed over; written whoever holds the step now.
    `fenced`: anything else (a refusal before the hand-over, a transient failure), written only
    while `step_leased` holds — the row's attempt still leased by the owner bound as
    `b_owner` (`recovery.repository.STEP_LEASED`) — so a late write from a former owner is
    refused. Lock order: the log rows only (in no set order: the other writers of several log
    rows of one step, the hand-over mark and the settling, do not run on them at the same
    time as their owner's record; should they, PostgreSQL ends one and the record is retried).
    """
    dialect = session.get_bind().dialect.name
    for fenced_by, outcomes in ((None, handed_over), (step_leased, fenced)):
        if not outcomes:
            continue
        statement = _outcomes_statement(dialect, fenced_by)
        if dialect == "postgresql":
            session.execute(
                statement,
                {
                    "ids": [o.log_id for o in outcomes],
                    "statuses": [str(o.status) for o in outcomes],
                    "message_ids": [o.provider_message_id for o in outcomes],
                    "errors": [o.error_message for o in outcomes],
                    "sent": [o.sent_at for o in outcomes],
                    "failed": [o.failed_at for o in outcomes],
                    "b_now": now,
                    "b_owner": owner,
                },
            )
            continue
        session.execute(
            statement,
            [
                {
                    "b_log_id": o.log_id,
                    "b_status": o.status,
                    "b_provider_message_id": o.provider_message_id,
                    "b_error_message": o.error_message,
                    "b_sent_at": o.sent_at,
                    "b_failed_at": o.failed_at,
                    "b_now": now,
                    "b_owner": owner,
                }
                for o in outcomes
            ],
        )


_CANCELLED_REASON = "not sent: the attempt ended before this message was handed over"
_UNKNOWN_REASON = (
    "outcome unknown: the hand-over was interrupted (the worker stopped); not sent again"
)


def settle_unsettled_logs(
    session: Session,
    *,
    now: datetime,
    step_ended: ColumnElement[bool],
    attempt_ids: list[int] | None = None,
) -> int:
    """Settle log rows nobody will finish: those whose attempt ended or moved past their step
    (`step_ended`, from `recovery.repository.step_ended`).

    Prevents a row staying `pending` or `handing_over` forever, and a withheld or abandoned
    message being sent later: a `pending` row (never handed over) becomes `cancelled`; a
    `handing_over` row (the provider may have it) becomes `unconfirmed`. Walks only the partial
    index of unsettled rows. Lock order: the log rows only; the attempts are read.
    """
    logs = NotificationLog
    criteria: list[ColumnElement[bool]] = [logs.status.in_(UNSETTLED_STATUSES), step_ended]
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
