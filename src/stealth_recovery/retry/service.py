"""Operator actions on the retry schedule."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from stealth_recovery.core.errors import Conflict, ServiceUnavailable
from stealth_recovery.core.jobs import run_after_commit
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery.errors import AttemptNotOpen
from stealth_recovery.recovery.models import OPEN_STATUSES, RecoveryAttempt
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.retry.lease import new_claim_token

BROKER_PING_TIMEOUT_SECONDS = 0.5


def _check_broker(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=BROKER_PING_TIMEOUT_SECONDS,
            socket_timeout=BROKER_PING_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailable(
            "the retry queue's broker (Redis) does not answer: nothing was sent; try again "
            "when it is back"
        ) from exc


class QueueUnavailable(ServiceUnavailable):
    type = "queue_unavailable"


class RemindersExhausted(Conflict):
    type = "reminders_exhausted"


def _check_can_retry(attempt: RecoveryAttempt, now: datetime) -> None:
    if attempt.status not in OPEN_STATUSES:
        raise AttemptNotOpen(f"attempt is {attempt.status}: no reminder can be sent")
    if attempt.expires_at <= now:
        raise AttemptNotOpen("attempt has expired: no reminder can be sent")
    if attempt.retry_count >= attempt.max_retries:
        raise RemindersExhausted(f"all {attempt.max_retries} reminders have been sent")


def _claim(session: Session, attempt: RecoveryAttempt, now: datetime) -> ClaimedStep:
    """Lease the attempt's next step under a fresh claim token, like a queue pass does.

    `next_retry_at` becomes the lease end (`QUEUE_LEASE_SECONDS` from now): if the step is lost
    before a worker records it, it comes due again then.
    """
    claim = new_claim_token()
    attempts_repository.lease_step(
        attempt, owner=claim, until=now + timedelta(seconds=get_settings().queue_lease_seconds)
    )
    session.flush()
    return ClaimedStep(attempt.id, attempt.retry_count, claim=claim)


def claim_now(session: Session, *, attempt: RecoveryAttempt) -> ClaimedStep:
    """Claim the attempt's next reminder for sending in this process (the embedded layout).

    The caller commits the claim, then runs the step (`Runtime.run_steps`). Raises Conflict
    when the attempt cannot get another reminder.
    """
    now = utc_now()
    _check_can_retry(attempt, now)
    return _claim(session, attempt, now)


def retry_now(session: Session, *, attempt: RecoveryAttempt) -> int:
    """Send the attempt's next reminder now, through the queue; returns its retry number.

    On the Celery layout the step is claimed (the attempt's `lease_owner` is the claim token,
    `next_retry_at` the lease end) and handed to the broker after commit; on the embedded
    layout it is made due now and the in-process scheduler woken.

    Raises Conflict when the attempt cannot get another reminder, and ServiceUnavailable (within
    about a second, changing nothing) when the Celery broker does not answer.
    """
    now = utc_now()
    _check_can_retry(attempt, now)
    settings = get_settings()
    if settings.broker_url is not None:
        _check_broker(settings.broker_url)
        # Claimed for the lease, like a queue claim: if the task is lost, the step comes back.
        step = _claim(session, attempt, now)

        def enqueue() -> None:
            from stealth_recovery.retry.tasks import send_recovery_notification

            # Short publish retries: the broker answered a moment ago, and a lost hand-off
            # comes back with the lease anyway.
            send_recovery_notification.apply_async(
                (step.attempt_id, step.retry_number, step.claim),
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
            )

        run_after_commit(session, enqueue)
    else:
        step = ClaimedStep(attempt.id, attempt.retry_count)
        attempts_repository.make_due(attempt, at=now)
        session.flush()

        def wake() -> None:
            from stealth_recovery.retry.scheduler import wake_embedded_scheduler

            wake_embedded_scheduler()

        run_after_commit(session, wake)
    return step.retry_number
