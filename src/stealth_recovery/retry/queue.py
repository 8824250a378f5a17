"""The due-attempt queue: claim due steps, hand them off, clean up ended attempts.

A queue pass (`claim_batch`, one transaction) expires due attempts past their link's expiry,
cancels exhausted ones, settles the log rows of ended steps, and claims due steps under a
fresh claim token (`recovery.repository.claim_due_steps`). `process_retry_queue` runs passes
until the due rows run out and hands each batch to a dispatcher: Celery tasks
(`retry.tasks`) or this process's runtime (`retry.runtime.run_due_now`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core import metrics
from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.counters import repository as counters
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery.events import record_attempts_events
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.retry.lease import new_claim_token, settle_unsettled_logs
from stealth_recovery.webhooks.models import EventType

log = structlog.get_logger(__name__)

_EXHAUSTED = {"reason": "retries exhausted"}


@dataclass(frozen=True)
class QueuePass:
    steps: list[ClaimedStep]
    settled: int  # attempts expired or cancelled as exhausted in this pass


def claim_batch(*, now: datetime, limit: int, lease: timedelta) -> QueuePass:
    """One queue pass in its own transaction: expire, cancel exhausted, settle the log rows of
    ended steps, claim due steps under a fresh claim token."""
    started = time.perf_counter()
    with session_scope() as session:
        expired = attempts_repository.expire_due(session, now=now, limit=limit)
        exhausted = attempts_repository.cancel_exhausted_due(session, now=now, limit=limit)
        # Webhook events are written with the change, in the pass's transaction.
        record_attempts_events(session, expired, EventType.expired)
        record_attempts_events(
            session, exhausted, EventType.cancelled, {i: _EXHAUSTED for i in exhausted}
        )
        settled_logs = settle_unsettled_logs(session, now=now)
        steps = attempts_repository.claim_due_steps(
            session, now=now, limit=limit, lease=lease, claim=new_claim_token()
        )
    if settled_logs:
        log.info("unsettled_logs_settled", count=settled_logs)
    metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
    if expired or exhausted or steps:
        log.info("queue_claimed", steps=len(steps), expired=len(expired), exhausted=len(exhausted))
    return QueuePass(steps=steps, settled=len(expired) + len(exhausted))


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


def cleanup_expired_attempts(session: Session, *, now: datetime) -> int:
    """Mark every open attempt past its `expires_at` as `expired` (daily, 02:00 UTC), and fold
    the counter shards of past days into one row per metric."""
    expired = attempts_repository.expire_past_deadline(session, now=now)
    record_attempts_events(session, expired, EventType.expired)
    counters.fold_shards(session, before=now.date())
    log.info("expired_attempts", count=len(expired))
    return len(expired)
