"""The retry engine: claim due steps, send them, record what happened, schedule the next one.

A reminder step goes through three short transactions:

1. the queue claim (`process_retry_queue`): due attempts get a lease (`repository.claim_due_steps`);
2. the send claim (`prepare_steps`): the attempt row is locked and re-read — a paid, expired or
   already-advanced attempt gets nothing — and one `pending` log row per channel is written under
   the unique (attempt, retry number, channel) key before any provider is called;
3. the record (`record_steps`): each log row gets its outcome, and the attempt advances
   (`retry_count`, `last_retry_at`, the next `next_retry_at`) — only if still open at that step.

Steps are recorded as soon as their messages are out, in small batches, so a worker killed
mid-batch leaves few sent-but-unrecorded messages: only those can go out twice after the lease.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Integer, Table, Update, bindparam, case, literal_column, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from stealth_recovery.core import metrics
from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.models import Channel, NotificationLog, NotificationStatus
from stealth_recovery.notifications.service import apply_held_statuses
from stealth_recovery.notifications.types import MessageContext, Notifier, SendOutcome
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import OPEN_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.service import pay_url, schedule_of
from stealth_recovery.retry import repository
from stealth_recovery.retry.backoff import Schedule, delay_before
from stealth_recovery.retry.repository import ClaimedStep

log = structlog.get_logger(__name__)

# Steps prepared per send-claim transaction, and how many such chunks are in flight at once.
PREPARE_CHUNK = 250
CHUNKS_IN_FLIGHT = 3
# Claimed batches the embedded path runs at once.
BATCHES_IN_FLIGHT = 2


@dataclass
class PreparedStep:
    attempt_id: int
    retry_number: int
    schedule: Schedule
    messages: list[MessageContext] = field(default_factory=list)


@dataclass
class StepResult:
    step: PreparedStep
    outcomes: list[SendOutcome]


@dataclass
class StepReport:
    claimed: int = 0  # steps handed to this run
    advanced: int = 0  # steps recorded as done
    skipped: int = 0  # stale, final, or being sent by another worker
    sent: int = 0  # messages accepted by a provider
    failed: int = 0  # messages failed, bounced, or skipped for want of a contact/provider

    def add(self, other: StepReport) -> None:
        for name in ("claimed", "advanced", "skipped", "sent", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def schedule_retry(*, schedule: Schedule, steps_done: int, last_retry_at: datetime) -> datetime:
    """When the attempt is next due after `steps_done` reminders.

    While reminders remain, that is the next reminder. After the last one it is the end of a
    grace period of one more delay, when the queue cancels the attempt as exhausted: the link in
    the last reminder keeps working meanwhile.
    """
    return last_retry_at + delay_before(steps_done, schedule)


_CONTACT_NAME: dict[str, str] = {
    Channel.email: "email address",
    Channel.sms: "phone number",
    Channel.whatsapp: "phone number",
}


def _recipient(channel: str, transaction: Transaction) -> str | None:
    if channel == Channel.email:
        return transaction.customer_email
    return transaction.customer_phone


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


def _insert_logs(
    session: Session, rows: list[dict[str, Any]], now: datetime
) -> list[tuple[int, int, str]]:
    """Insert log rows; a row whose key exists already is skipped (a repeat is a no-op)."""
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


def prepare_steps(
    session: Session,
    *,
    steps: Sequence[ClaimedStep],
    notifier: Notifier,
    now: datetime,
    lease: timedelta,
) -> list[PreparedStep]:
    """Claim the sends of `steps`; returns what to send. The caller commits before sending.

    Prevents chasing a paid customer: the attempt row is locked and re-read here, and
    completion (`recovery.repository.finish`) takes the same row lock. Prevents sending a step
    twice: a step whose log rows another worker wrote within the lease is left to that worker,
    and the unique log key turns any other repeat into a no-op.
    """
    wanted = {s.attempt_id: s.retry_number for s in steps}
    if not wanted:
        return []
    rows = session.execute(
        select(RecoveryAttempt, Transaction, Organization.name)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .join(Organization, Organization.id == RecoveryAttempt.organization_id)
        .where(RecoveryAttempt.id.in_(sorted(wanted)))
        .order_by(RecoveryAttempt.id)  # one lock order for every worker: no deadlocks
        .with_for_update(of=RecoveryAttempt)
    ).all()
    existing: dict[tuple[int, int], list[NotificationLog]] = {}
    for log_row in session.scalars(
        select(NotificationLog).where(NotificationLog.attempt_id.in_(sorted(wanted)))
    ):
        existing.setdefault((log_row.attempt_id, log_row.retry_number), []).append(log_row)

    prepared: list[PreparedStep] = []
    new_rows: list[dict[str, Any]] = []
    pending_for: dict[tuple[int, str], tuple[RecoveryAttempt, Transaction, str]] = {}
    taken_over: list[tuple[NotificationLog, RecoveryAttempt, Transaction, str]] = []
    stale_before = now - lease
    for attempt, transaction, merchant_name in rows:
        k = wanted[attempt.id]
        if attempt.status not in OPEN_STATUSES or attempt.retry_count != k:
            continue  # paid, cancelled, or this step already recorded
        if attempt.expires_at <= now:
            attempt.status = AttemptStatus.expired
            attempt.next_retry_at = None
            continue
        logs = {row.channel: row for row in existing.get((attempt.id, k), [])}
        if any(
            row.status == NotificationStatus.pending and row.updated_at > stale_before
            for row in logs.values()
        ):
            continue  # another worker is sending this step right now
        step = PreparedStep(attempt.id, k, schedule_of(attempt))
        prepared.append(step)
        for channel in attempt.enabled_channels:
            row = logs.get(channel)
            if row is not None:
                if row.status == NotificationStatus.pending:
                    # Its worker died after writing it: we cannot know whether the provider got
                    # it, so it is sent again (at least once beats a forgotten reminder).
                    row.send_attempts += 1
                    row.updated_at = now
                    taken_over.append((row, attempt, transaction, merchant_name))
                continue
            recipient = _recipient(channel, transaction)
            reason = notifier.unavailable_reason(channel)
            if recipient is None:
                reason = f"skipped: the customer has no {_CONTACT_NAME[channel]}"
            new_rows.append(
                {
                    "organization_id": attempt.organization_id,
                    "attempt_id": attempt.id,
                    "retry_number": k,
                    "channel": channel,
                    "recipient": recipient,
                    "provider": notifier.provider_for(channel),
                    "status": NotificationStatus.failed if reason else NotificationStatus.pending,
                    "error_message": reason,
                    "failed_at": now if reason else None,
                    "send_attempts": 0 if reason else 1,
                }
            )
            if reason:
                metrics.MESSAGES.labels(channel=channel, status="failed").inc()
            else:
                pending_for[(attempt.id, channel)] = (attempt, transaction, merchant_name)

    by_attempt = {step.attempt_id: step for step in prepared}
    for log_id, attempt_id, channel in _insert_logs(session, new_rows, now):
        if (attempt_id, channel) in pending_for:
            attempt, transaction, merchant_name = pending_for[(attempt_id, channel)]
            by_attempt[attempt_id].messages.append(
                _context(log_id, channel, attempt, transaction, merchant_name)
            )
    for row, attempt, transaction, merchant_name in taken_over:
        by_attempt[attempt.id].messages.append(
            _context(row.id, row.channel, attempt, transaction, merchant_name)
        )
    session.flush()
    return prepared


def _context(
    log_id: int,
    channel: str,
    attempt: RecoveryAttempt,
    transaction: Transaction,
    merchant_name: str,
) -> MessageContext:
    recipient = _recipient(channel, transaction)
    assert recipient is not None
    return MessageContext(
        log_id=log_id,
        attempt_id=attempt.id,
        organization_id=attempt.organization_id,
        retry_number=attempt.retry_count,
        max_retries=attempt.max_retries,
        channel=channel,
        recipient=recipient,
        locale=transaction.customer_locale,
        timezone=transaction.customer_timezone,
        merchant_name=merchant_name,
        customer_name=transaction.customer_name,
        amount_minor=transaction.amount_minor,
        currency=transaction.currency,
        pay_url=pay_url(attempt),
        expires_at=attempt.expires_at,
        decline_category=attempt.decline_category,
    )


# Core statements run with one parameter set per row (executemany). The bound names differ from
# the column names, which SQLAlchemy reserves for the SET clause.
_log_table = cast(Table, NotificationLog.__table__)
_attempt_table = cast(Table, RecoveryAttempt.__table__)
_logs = _log_table.c
_attempts = _attempt_table.c

_LOG_OUTCOME = (
    update(_log_table)
    .where(_logs.id == bindparam("b_log_id"), _logs.status == NotificationStatus.pending)
    .values(
        status=bindparam("b_status"),
        provider_message_id=bindparam("b_provider_message_id"),
        error_message=bindparam("b_error_message"),
        sent_at=bindparam("b_sent_at"),
        failed_at=bindparam("b_failed_at"),
        updated_at=bindparam("b_now"),
    )
)


def _advance(any_sent: bool) -> Update:
    step = bindparam("b_step", type_=Integer)
    values: dict[str, Any] = {
        "retry_count": step + 1,
        "last_retry_at": bindparam("b_now"),
        "next_retry_at": bindparam("b_next_at"),
        "updated_at": bindparam("b_now"),
    }
    if any_sent:
        # The first reminder out moves a new attempt to `sent`.
        values["status"] = case(
            (_attempts.status == AttemptStatus.created, AttemptStatus.sent.value),
            else_=_attempts.status,
        )
    return (
        update(_attempt_table)
        .where(
            _attempts.id == bindparam("b_attempt_id"),
            _attempts.retry_count == step,
            # Literal values: an expanding IN cannot run once per parameter set.
            _attempts.status.in_([literal_column(f"'{status}'") for status in OPEN_STATUSES]),
        )
        .values(**values)
    )


_ADVANCE_SENT = _advance(any_sent=True)
_ADVANCE_NOT_SENT = _advance(any_sent=False)


def record_steps(session: Session, *, results: Sequence[StepResult], now: datetime) -> StepReport:
    """Write each message's outcome and advance each attempt past its step.

    An attempt completed or cancelled while its step was in flight keeps its final state: the
    advance only matches an open attempt still at that step.
    """
    report = StepReport()
    log_params: list[dict[str, object]] = []
    advance_sent: list[dict[str, object]] = []
    advance_not_sent: list[dict[str, object]] = []
    for result in results:
        any_sent = False
        for message, outcome in zip(result.step.messages, result.outcomes, strict=True):
            sent = outcome.status == NotificationStatus.sent
            any_sent = any_sent or sent
            report.sent += sent
            report.failed += not sent
            log_params.append(
                {
                    "b_log_id": message.log_id,
                    "b_status": outcome.status,
                    "b_provider_message_id": outcome.provider_message_id,
                    "b_error_message": outcome.error_message,
                    "b_sent_at": now if sent else None,
                    "b_failed_at": None if sent else now,
                    "b_now": now,
                }
            )
        done = result.step.retry_number + 1
        params = {
            "b_attempt_id": result.step.attempt_id,
            "b_step": result.step.retry_number,
            "b_now": now,
            "b_next_at": schedule_retry(
                schedule=result.step.schedule, steps_done=done, last_retry_at=now
            ),
        }
        (advance_sent if any_sent else advance_not_sent).append(params)
    if log_params:
        session.execute(_LOG_OUTCOME, log_params)
    for stmt, params_list in ((_ADVANCE_SENT, advance_sent), (_ADVANCE_NOT_SENT, advance_not_sent)):
        if params_list:
            session.execute(stmt, params_list)
    # Delivery callbacks that beat this record to the webhook were held: apply them now.
    apply_held_statuses(
        session,
        messages=[
            (outcome.provider, outcome.provider_message_id)
            for result in results
            for outcome in result.outcomes
            if outcome.provider_message_id
        ],
    )
    report.advanced = len(advance_sent) + len(advance_not_sent)
    metrics.REMINDER_STEPS.labels(outcome="sent").inc(len(advance_sent))
    metrics.REMINDER_STEPS.labels(outcome="not_sent").inc(len(advance_not_sent))
    return report


def _prepare_in_own_transaction(
    steps: Sequence[ClaimedStep], notifier: Notifier, lease: timedelta
) -> list[PreparedStep]:
    with session_scope() as session:
        return prepare_steps(session, steps=steps, notifier=notifier, now=utc_now(), lease=lease)


def _record_in_own_transaction(results: Sequence[StepResult]) -> StepReport:
    with session_scope() as session:
        return record_steps(session, results=results, now=utc_now())


async def run_steps(
    steps: Sequence[ClaimedStep],
    *,
    notifier: Notifier,
    lease: timedelta | None = None,
) -> StepReport:
    """Send the given claimed steps with many messages in flight, recording as they finish."""
    lease = lease or timedelta(seconds=get_settings().queue_lease_seconds)
    report = StepReport(claimed=len(steps))
    finished: asyncio.Queue[StepResult | None] = asyncio.Queue()

    async def recorder() -> None:
        # Records whatever has finished since the last write: small batches under light load,
        # large ones under heavy load, without a timer.
        done = False
        while not done:
            item = await finished.get()
            batch: list[StepResult] = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while not finished.empty() and len(batch) < 1000:
                nxt = finished.get_nowait()
                if nxt is None:
                    done = True
                else:
                    batch.append(nxt)
            if batch:
                try:
                    report.add(await asyncio.to_thread(_record_in_own_transaction, batch))
                except Exception:
                    # The lease brings these steps back; their sent logs keep them from
                    # going out again.
                    log.exception("record_failed", steps=len(batch))

    async def send_step(step: PreparedStep) -> None:
        outcomes = await asyncio.gather(*(notifier.send(m) for m in step.messages))
        await finished.put(StepResult(step, list(outcomes)))

    in_flight = asyncio.Semaphore(CHUNKS_IN_FLIGHT)

    async def run_chunk(chunk: Sequence[ClaimedStep]) -> None:
        async with in_flight:
            try:
                prepared = await asyncio.to_thread(
                    _prepare_in_own_transaction, chunk, notifier, lease
                )
            except Exception:
                log.exception("prepare_failed", steps=len(chunk))
                return
            report.skipped += len(chunk) - len(prepared)
            await asyncio.gather(*(send_step(step) for step in prepared))

    recorder_task = asyncio.create_task(recorder())
    chunks = [steps[i : i + PREPARE_CHUNK] for i in range(0, len(steps), PREPARE_CHUNK)]
    try:
        await asyncio.gather(*(run_chunk(chunk) for chunk in chunks))
    finally:
        await finished.put(None)
        await recorder_task
    return report


@dataclass(frozen=True)
class QueuePass:
    steps: list[ClaimedStep]
    settled: int  # attempts expired or cancelled as exhausted in this pass


def claim_batch(*, now: datetime, limit: int, lease: timedelta) -> QueuePass:
    """One queue pass in its own transaction: expire, cancel exhausted, claim due steps."""
    started = time.perf_counter()
    with session_scope() as session:
        expired = repository.expire_due(session, now=now, limit=limit)
        exhausted = repository.cancel_exhausted_due(session, now=now, limit=limit)
        steps = repository.claim_due_steps(session, now=now, limit=limit, lease=lease)
    metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
    if expired or exhausted or steps:
        log.info("queue_claimed", steps=len(steps), expired=expired, exhausted=exhausted)
    return QueuePass(steps=steps, settled=expired + exhausted)


def process_retry_queue(
    *,
    dispatch: Callable[[list[ClaimedStep]], None],
    now: datetime | None = None,
    max_batches: int = 100,
) -> int:
    """Claim due steps batch by batch and hand each batch to `dispatch`; never loads the table."""
    settings = get_settings()
    lease = timedelta(seconds=settings.queue_lease_seconds)
    total = 0
    for _ in range(max_batches):
        queue_pass = claim_batch(now=now or utc_now(), limit=settings.queue_batch_size, lease=lease)
        if queue_pass.steps:
            dispatch(queue_pass.steps)
            total += len(queue_pass.steps)
        # A short batch means the due rows have run out, unless the pass was busy settling
        # expired or exhausted attempts: then there may be more behind them.
        if len(queue_pass.steps) < settings.queue_batch_size and not queue_pass.settled:
            break
    return total


def run_due_now(*, now: datetime | None = None) -> int:
    """Claim every due step and run it in this process (the embedded scheduler's tick).

    Two claimed batches are in flight at once, so the next claim and its sends overlap the
    recording of the previous batch instead of waiting for it.
    """
    from stealth_recovery.retry.runtime import get_runtime

    runtime = get_runtime()
    report = StepReport()
    in_flight: deque[Future[StepReport]] = deque()

    def run_here(steps: list[ClaimedStep]) -> None:
        if len(in_flight) >= BATCHES_IN_FLIGHT:
            report.add(in_flight.popleft().result())
        in_flight.append(runtime.submit_steps(steps))

    try:
        process_retry_queue(dispatch=run_here, now=now)
    finally:
        while in_flight:
            report.add(in_flight.popleft().result())
    return report.advanced


def cleanup_expired_attempts(session: Session, *, now: datetime) -> int:
    """Mark every open attempt past its `expires_at` as `expired` (daily, 02:00 UTC)."""
    count = repository.expire_past_deadline(session, now=now)
    log.info("expired_attempts", count=count)
    return count
