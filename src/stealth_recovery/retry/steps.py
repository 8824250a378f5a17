"""A reminder step's own work: prepare (the send claim), send (many in flight), record.

A step goes through four short transactions; the first, the queue claim, is `retry.queue`'s:

1. the send claim (`prepare_steps`): the attempt row is locked and re-read — a paid, expired,
   already-advanced or otherwise-owned attempt gets nothing — the worker takes the lease in its
   own name, and one `pending` log row per channel is written under the unique (attempt, retry
   number, channel) key before any provider is called;
2. the hand-over (`lease.HandOverGate`): immediately before each provider call the row is marked
   `handing_over`, only if the attempt is still open and still leased by this worker;
3. the record (`record_steps`): each log row gets its outcome, and the attempt advances
   (`retry_count`, `last_retry_at`, the next `next_retry_at`) — only if still open at that step
   and still ours. A step with a transient failure is due again later instead.

A row found `handing_over` by the next owner is settled `unconfirmed`, never resent: a crash
cannot send a message twice. Rows still `pending` were never handed over and are sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core import metrics
from stealth_recovery.core.contacts import customer_country
from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.slots import Slots
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.notifications.delivery_status import apply_held_statuses
from stealth_recovery.notifications.events import record_bounces
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.notifications.types import (
    TRANSIENT,
    WITHHELD,
    MessageContext,
    Notifier,
    SendOutcome,
)
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery.events import record_attempts_events
from stealth_recovery.recovery.models import OPEN_STATUSES
from stealth_recovery.recovery.presenters import pay_url_for
from stealth_recovery.recovery.repository import ClaimedStep, SendCandidate, StepMove
from stealth_recovery.recovery.schedule import Schedule, in_window, next_due
from stealth_recovery.recovery.windows import UTC_PLACE, Place, SendWindow
from stealth_recovery.retry.lease import (
    HandOverGate,
    Heartbeat,
    process_owner,
    settle_unsettled_logs,
)
from stealth_recovery.webhooks.models import EventType
from stealth_recovery.webhooks.service import any_endpoints

log = structlog.get_logger(__name__)

# Steps prepared per send-claim transaction, and how many such chunks are in flight at once.
PREPARE_CHUNK = 250
CHUNKS_IN_FLIGHT = 3


@dataclass
class PreparedStep:
    attempt_id: int
    retry_number: int
    schedule: Schedule
    messages: list[MessageContext] = field(default_factory=list)
    place: Place = UTC_PLACE  # where the customer is, for the send window (UTC without one)
    started_at: datetime | None = None  # first try of this step (its oldest log row)
    tries: int = 1  # tries of the step's messages so far, this one included
    already_out: bool = False  # a message of this step went out on an earlier try


@dataclass(frozen=True)
class StepRetry:
    """When a step whose provider failed transiently is tried again, and when it gives up.

    The n-th retry waits `initial × 2^(n-1)`, at most `max_delay`; a message still failing
    `deadline` after the step's first try is failed and the schedule moves on.
    """

    initial: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(minutes=30)
    deadline: timedelta = timedelta(hours=6)

    @classmethod
    def from_settings(cls) -> StepRetry:
        settings = get_settings()
        return cls(
            initial=timedelta(seconds=settings.step_retry_initial_seconds),
            max_delay=timedelta(seconds=settings.step_retry_max_seconds),
            deadline=timedelta(seconds=settings.step_retry_deadline_seconds),
        )

    def delay(self, tries: int) -> timedelta:
        return min(self.initial * 2 ** max(0, tries - 1), self.max_delay)


@dataclass
class StepResult:
    step: PreparedStep
    outcomes: list[SendOutcome]


@dataclass
class StepReport:
    claimed: int = 0  # steps handed to this run
    advanced: int = 0  # steps recorded as done
    skipped: int = 0  # stale, final, or being sent by another worker
    deferred: int = 0  # steps due again later after a transient provider failure
    sent: int = 0  # messages accepted by a provider
    failed: int = 0  # messages failed, bounced, or skipped for want of a contact/provider
    unconfirmed: int = 0  # messages handed over without an answer
    withheld: int = 0  # messages stopped at the hand-over (paid, or the step changed hands)

    def add(self, other: StepReport) -> None:
        for name in (
            "claimed",
            "advanced",
            "skipped",
            "deferred",
            "sent",
            "failed",
            "unconfirmed",
            "withheld",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


_CONTACT_NAME: dict[str, str] = {
    Channel.email: "email address",
    Channel.sms: "phone number",
    Channel.whatsapp: "phone number",
}


def _recipient(channel: str, attempt: SendCandidate) -> str | None:
    if channel == Channel.email:
        return attempt.customer_email
    return attempt.customer_phone


def prepare_steps(
    session: Session,
    *,
    steps: Sequence[ClaimedStep],
    notifier: Notifier,
    now: datetime,
    lease: timedelta,
    owner: str | None = None,
) -> list[PreparedStep]:
    """Claim the sends of `steps` for `owner`; returns what to send. The caller commits first.

    Prevents chasing a paid customer: the attempt rows are locked and re-read
    (`recovery.repository.lock_for_send`, in id order), and completion takes the same row
    lock. Prevents sending a step twice: a step leased by someone else (a newer claim, or a
    live worker) is left alone; a row a former owner left `handing_over` is settled
    `unconfirmed` and never resent; the unique log key turns any other repeat into a no-op
    (`notifications.repository.insert_logs`).

    Reads and writes plain rows, a few statements per call whatever the number of steps: the
    lock and re-read, the existing log rows, the lease, the new log rows.
    """
    owner = owner or process_owner()
    wanted = {s.attempt_id: s for s in steps}
    if not wanted:
        return []
    rows = attempts_repository.lock_for_send(session, attempt_ids=list(wanted))
    existing: dict[tuple[int, int], list[logs_repository.StepLog]] = {}
    for log_row in logs_repository.logs_of_attempts(session, attempt_ids=list(wanted)):
        existing.setdefault((log_row.attempt_id, log_row.retry_number), []).append(log_row)

    prepared: list[PreparedStep] = []
    new_rows: list[dict[str, Any]] = []
    pending_for: dict[tuple[int, str], SendCandidate] = {}
    taken_over: list[tuple[logs_repository.StepLog, SendCandidate]] = []
    expired: list[int] = []
    interrupted: list[int] = []
    for attempt in rows:
        claimed = wanted[attempt.id]
        k = claimed.retry_number
        if attempt.status not in OPEN_STATUSES or attempt.retry_count != k:
            continue  # paid, cancelled, or this step already recorded
        lease_running = attempt.next_retry_at is not None and attempt.next_retry_at > now
        if attempt.lease_owner != claimed.claim and lease_running:
            continue  # claimed again since, or held by a live worker: not ours
        if attempt.expires_at <= now:
            expired.append(attempt.id)
            continue
        schedule = _schedule(attempt)
        step = PreparedStep(
            attempt.id,
            k,
            schedule,
            started_at=now,
            place=UTC_PLACE if schedule.window is None else _place(attempt),
        )
        prepared.append(step)
        logs = {row.channel: row for row in existing.get((attempt.id, k), [])}
        for earlier in logs.values():
            step.started_at = min(step.started_at or now, earlier.created_at)
            if earlier.status == NotificationStatus.handing_over:
                # Its worker stopped during the hand-over: the provider may have it, so it
                # becomes `unconfirmed` (below), which counts as out.
                interrupted.append(earlier.id)
                step.already_out = True
            elif earlier.status in _OUT:
                step.already_out = True
        for channel in attempt.enabled_channels:
            row = logs.get(channel)
            if row is not None:
                if row.status == NotificationStatus.pending:
                    # Never handed over (a worker died before, or a transient failure): send.
                    step.tries = max(step.tries, row.send_attempts + 1)
                    taken_over.append((row, attempt))
                continue
            recipient = _recipient(channel, attempt)
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
                pending_for[(attempt.id, channel)] = attempt

    attempts_repository.expire_locked(session, attempt_ids=expired, now=now)
    attempts_repository.lease_steps(
        session,
        attempt_ids=[step.attempt_id for step in prepared],
        owner=owner,
        until=now + lease,
        now=now,
    )
    logs_repository.mark_interrupted(session, log_ids=interrupted, now=now)
    logs_repository.count_another_try(session, log_ids=[row.id for row, _ in taken_over], now=now)
    by_attempt = {step.attempt_id: step for step in prepared}
    for log_id, attempt_id, channel in logs_repository.insert_logs(session, new_rows, now):
        if (attempt_id, channel) in pending_for:
            by_attempt[attempt_id].messages.append(
                _context(log_id, channel, pending_for[(attempt_id, channel)])
            )
    for row, attempt in taken_over:
        by_attempt[attempt.id].messages.append(_context(row.id, row.channel, attempt))
    return prepared


_OUT = (NotificationStatus.sent, NotificationStatus.delivered, NotificationStatus.unconfirmed)


def _schedule(attempt: SendCandidate) -> Schedule:
    """The schedule frozen on the attempt (`recovery.service.schedule_of` for a plain row)."""
    window = None
    if attempt.window_start_minute is not None and attempt.window_end_minute is not None:
        window = SendWindow(
            start_minute=attempt.window_start_minute,
            end_minute=attempt.window_end_minute,
            days=attempt.window_days or 0,
            skip_holidays=attempt.window_skip_holidays,
        )
    return Schedule(
        max_retries=attempt.max_retries,
        initial_delay_minutes=attempt.initial_delay_minutes,
        backoff_multiplier=attempt.backoff_multiplier,
        max_delay_minutes=attempt.max_delay_minutes,
        window=window,
    )


def _place(attempt: SendCandidate) -> Place:
    """Where the customer is (`recovery.service.place_of` for a plain row)."""
    return Place(
        zone=attempt.customer_timezone,
        country=customer_country(attempt.customer_phone, attempt.customer_locale),
    )


def _context(log_id: int, channel: str, attempt: SendCandidate) -> MessageContext:
    recipient = _recipient(channel, attempt)
    assert recipient is not None
    return MessageContext(
        log_id=log_id,
        attempt_id=attempt.id,
        organization_id=attempt.organization_id,
        retry_number=attempt.retry_count,
        max_retries=attempt.max_retries,
        channel=channel,
        recipient=recipient,
        locale=attempt.customer_locale,
        timezone=attempt.customer_timezone,
        merchant_name=attempt.merchant_name,
        customer_name=attempt.customer_name,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        pay_url=pay_url_for(attempt.token),
        expires_at=attempt.expires_at,
        decline_category=attempt.decline_category,
    )


def record_steps(
    session: Session,
    *,
    results: Sequence[StepResult],
    now: datetime,
    owner: str | None = None,
    retry: StepRetry | None = None,
) -> StepReport:
    """Write each message's outcome and move each step on: advanced, due again, or left.

    - Every message has a final outcome (sent, failed, bounced, unconfirmed): the attempt
      advances past the step.
    - A message failed transiently (outage, throttling) before `retry.deadline`: its row goes
      back to `pending` and the step is due again after `retry.delay(tries)`; the attempt does
      not advance. Past the deadline the message is failed and the step advances.
    - A message was withheld at the hand-over: the attempt ended (its rows are settled as
      `cancelled`) or the step is another worker's now; nothing else is written.

    Every write about the attempt needs `owner` to still hold the lease (fencing), and an
    attempt completed or cancelled while its step was in flight keeps its final state.
    """
    owner = owner or process_owner()
    retry = retry or StepRetry.from_settings()
    report = StepReport()
    handed_over: list[logs_repository.Outcome] = []
    fenced: list[logs_repository.Outcome] = []
    advance_sent: list[StepMove] = []
    advance_not_sent: list[StepMove] = []
    deferred: list[StepMove] = []
    withheld_attempts: list[int] = []
    reminders: dict[int, dict[str, object]] = {}  # webhook `reminder` of each step that went out
    bounced: list[int] = []
    for result in results:
        step = result.step
        deadline = (step.started_at or now) + retry.deadline
        any_out = step.already_out
        transient = withheld = False
        for message, outcome in zip(step.messages, result.outcomes, strict=True):
            status, error = outcome.status, outcome.error_message
            if status == WITHHELD:
                withheld = True
                report.withheld += 1
                continue
            if status == TRANSIENT and now >= deadline:
                status = NotificationStatus.failed
                error = f"{error} (gave up {retry.deadline} after the step's first try)"
            sent = status == NotificationStatus.sent
            written = logs_repository.Outcome(
                log_id=message.log_id,
                status=NotificationStatus.pending if status == TRANSIENT else status,
                provider_message_id=outcome.provider_message_id,
                error_message=error,
                sent_at=now if sent else None,
                failed_at=None if sent or status in _NOT_FAILED else now,
            )
            if status == TRANSIENT:
                transient = True
                fenced.append(written)
                continue
            any_out = any_out or sent or status == NotificationStatus.unconfirmed
            if status == NotificationStatus.bounced:
                bounced.append(message.log_id)
            if sent or status == NotificationStatus.unconfirmed:
                reminder = reminders.setdefault(
                    step.attempt_id, {"retry_number": step.retry_number, "channels": []}
                )
                cast(list[str], reminder["channels"]).append(message.channel)
            report.sent += sent
            report.unconfirmed += status == NotificationStatus.unconfirmed
            report.failed += status in (NotificationStatus.failed, NotificationStatus.bounced)
            (handed_over if outcome.handed_over else fenced).append(written)
        if withheld:
            withheld_attempts.append(step.attempt_id)
            continue
        if transient:
            deferred.append(
                StepMove(
                    step.attempt_id,
                    step.retry_number,
                    # The same reminder again: inside its send window too.
                    next_at=in_window(
                        min(now + retry.delay(step.tries), deadline), step.schedule, step.place
                    ),
                )
            )
            continue
        move = StepMove(
            step.attempt_id,
            step.retry_number,
            next_at=next_due(
                step.schedule, steps_done=step.retry_number + 1, last_at=now, place=step.place
            ),
        )
        (advance_sent if any_out else advance_not_sent).append(move)
    logs_repository.write_outcomes(
        session,
        handed_over=handed_over,
        fenced=fenced,
        owner=owner,
        now=now,
        step_leased=attempts_repository.STEP_LEASED,
    )
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
    # Rows matched, not steps meant: a fenced-off owner advances nothing.
    report.deferred = attempts_repository.defer_steps(session, moves=deferred, owner=owner, now=now)
    advanced_sent = attempts_repository.advance_steps(
        session, moves=advance_sent, any_sent=True, owner=owner, now=now
    )
    advanced_not_sent = attempts_repository.advance_steps(
        session, moves=advance_not_sent, any_sent=False, owner=owner, now=now
    )
    if withheld_attempts:
        settle_unsettled_logs(session, now=now, attempt_ids=withheld_attempts)
    report.advanced = advanced_sent + advanced_not_sent
    _record_events(session, advance_sent, reminders, bounced, now=now)
    metrics.REMINDER_STEPS.labels(outcome="sent").inc(advanced_sent)
    metrics.REMINDER_STEPS.labels(outcome="not_sent").inc(advanced_not_sent)
    return report


def _record_events(
    session: Session,
    advance_sent: list[StepMove],
    reminders: dict[int, dict[str, object]],
    bounced: list[int],
    *,
    now: datetime,
) -> None:
    """Webhook events of a record, in its transaction: a reminder out for every step that
    advanced with a message sent, a bounce for every message refused at the send."""
    if not (advance_sent or bounced) or not any_endpoints(session):
        return
    record_bounces(session, bounced)
    if not advance_sent:
        return
    # The advances that matched (a fenced-off owner's did not) carry this record's time.
    advanced = attempts_repository.recorded_at(
        session, attempt_ids=[move.attempt_id for move in advance_sent], at=now
    )
    record_attempts_events(
        session,
        advanced,
        EventType.reminder_sent,
        {i: {"reminder": reminders.get(i, {})} for i in advanced},
    )


_NOT_FAILED = (NotificationStatus.unconfirmed, NotificationStatus.pending, TRANSIENT)


def _prepare_in_own_transaction(
    steps: Sequence[ClaimedStep], notifier: Notifier, lease: timedelta, owner: str
) -> list[PreparedStep]:
    with session_scope() as session:
        return prepare_steps(
            session, steps=steps, notifier=notifier, now=utc_now(), lease=lease, owner=owner
        )


def _record_in_own_transaction(
    results: Sequence[StepResult], owner: str, retry: StepRetry
) -> StepReport:
    with session_scope() as session:
        return record_steps(session, results=results, now=utc_now(), owner=owner, retry=retry)


# A record of fewer finished steps than this waits this long for more (seconds).
RECORD_GATHER = 100
RECORD_LINGER_SECONDS = 0.02

# Waits between tries of a failed record write (seconds): doubled up to the cap, never given up.
RECORD_RETRY_FIRST = 0.5
RECORD_RETRY_MAX = 10.0


async def run_steps(
    steps: Sequence[ClaimedStep],
    *,
    notifier: Notifier,
    lease: timedelta | None = None,
    owner: str | None = None,
) -> StepReport:
    """Send the given claimed steps with many messages in flight, recording as they finish.

    The run holds the steps' leases in `owner`'s name (this process by default) and renews
    them while it works. Each message passes `HandOverGate` right before its provider call.
    A record that fails (database down) is kept and retried until it is written; meanwhile
    the rows stay `handing_over` in the database, so even if this process dies the messages
    are settled `unconfirmed`, never resent.
    """
    lease = lease or timedelta(seconds=get_settings().queue_lease_seconds)
    owner = owner or process_owner()
    retry = StepRetry.from_settings()
    report = StepReport(claimed=len(steps))
    finished: asyncio.Queue[StepResult | None] = asyncio.Queue()
    gate = HandOverGate(owner)
    heartbeat = Heartbeat(owners={owner, *(s.claim for s in steps if s.claim)}, lease=lease)
    heartbeat.held.update(s.attempt_id for s in steps)

    # Steps started and not yet recorded: this bounds what a kill can leave unconfirmed (the
    # messages handed over whose outcome is not written yet), whatever the recorder's lag.
    unrecorded = Slots(get_settings().send_concurrency)

    async def record(batch: list[StepResult]) -> None:
        wait = RECORD_RETRY_FIRST
        while True:
            try:
                report.add(await asyncio.to_thread(_record_in_own_transaction, batch, owner, retry))
                break
            except Exception:
                # Kept and retried: an outcome is never dropped (a dropped "sent" would be
                # settled unconfirmed, a dropped failure would hide a bounce).
                log.exception("record_failed_retrying", steps=len(batch), wait_seconds=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECORD_RETRY_MAX)
        heartbeat.held.difference_update(result.step.attempt_id for result in batch)
        for _ in batch:
            unrecorded.release()

    async def recorder() -> None:
        # Records whatever has finished since the last write, after a short wait for more when
        # that is little: a record costs about as much for one step as for a hundred.
        done = False
        while not done:
            item = await finished.get()
            batch: list[StepResult] = []
            if item is None:
                done = True
            else:
                batch.append(item)
                if finished.qsize() < RECORD_GATHER:
                    await asyncio.sleep(RECORD_LINGER_SECONDS)
            while not finished.empty() and len(batch) < 1000:
                nxt = finished.get_nowait()
                if nxt is None:
                    done = True
                else:
                    batch.append(nxt)
            if batch:
                await record(batch)

    async def send_step(step: PreparedStep) -> None:
        await unrecorded.acquire()
        if len(step.messages) == 1:  # the usual step: no task of its own for its one message
            message = step.messages[0]
            outcomes = [await notifier.send(message, gate.for_message(message.log_id))]
        else:
            outcomes = await asyncio.gather(
                *(notifier.send(m, gate.for_message(m.log_id)) for m in step.messages)
            )
        finished.put_nowait(StepResult(step, list(outcomes)))

    in_flight = Slots(CHUNKS_IN_FLIGHT)

    async def run_chunk(chunk: Sequence[ClaimedStep]) -> None:
        async with in_flight:
            try:
                prepared = await asyncio.to_thread(
                    _prepare_in_own_transaction, chunk, notifier, lease, owner
                )
            except Exception:
                # Nothing was written: the steps come due again when their lease ends.
                log.exception("prepare_failed", steps=len(chunk))
                heartbeat.held.difference_update(s.attempt_id for s in chunk)
                return
            taken = {step.attempt_id for step in prepared}
            heartbeat.held.difference_update(
                s.attempt_id for s in chunk if s.attempt_id not in taken
            )
            report.skipped += len(chunk) - len(prepared)
            await asyncio.gather(*(send_step(step) for step in prepared))

    heartbeat.start()
    recorder_task = asyncio.create_task(recorder())
    chunks = [steps[i : i + PREPARE_CHUNK] for i in range(0, len(steps), PREPARE_CHUNK)]
    try:
        await asyncio.gather(*(run_chunk(chunk) for chunk in chunks))
    finally:
        await finished.put(None)
        await recorder_task
        await heartbeat.stop()
    return report
