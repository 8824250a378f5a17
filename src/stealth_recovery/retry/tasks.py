"""Thin Celery wrappers around the queue and the runtime."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_shutdown

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.retry import queue
from stealth_recovery.retry.runtime import get_runtime, reset_runtime
from stealth_recovery.worker import celery_app


def _dispatch(steps: list[ClaimedStep]) -> None:
    size = get_settings().dispatch_chunk_size
    for i in range(0, len(steps), size):
        send_recovery_batch.delay(
            [[s.attempt_id, s.retry_number, s.claim] for s in steps[i : i + size]]
        )


@celery_app.task(name="retry.process_retry_queue")
def process_retry_queue() -> int:
    """Claim due steps and queue them for the workers (Beat, every minute)."""
    return queue.process_retry_queue(dispatch=_dispatch)


@celery_app.task(name="retry.send_recovery_batch")
def send_recovery_batch(steps: list[list[Any]]) -> dict[str, Any]:
    """Send a batch of claimed steps `[attempt_id, retry_number, claim token]`, many messages
    in flight. A step whose lease another claim holds now is skipped."""
    claimed = [
        ClaimedStep(
            attempt_id=int(s[0]), retry_number=int(s[1]), claim=s[2] if len(s) > 2 else None
        )
        for s in steps
    ]
    return vars(get_runtime().run_steps(claimed))


@celery_app.task(name="retry.send_recovery_notification")
def send_recovery_notification(
    attempt_id: int, retry_number: int, claim: str | None = None
) -> dict[str, Any]:
    """Send one reminder step (retry now); a repeat of a recorded step is a no-op."""
    return send_recovery_batch([[attempt_id, retry_number, claim]])


@celery_app.task(name="retry.cleanup_expired_attempts")
def cleanup_expired_attempts() -> int:
    """Expire every open attempt past its link's expiry (daily, 02:00 UTC)."""
    with session_scope() as session:
        return queue.cleanup_expired_attempts(session, now=utc_now())


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    # A worker process closes its provider connections and its event loop on the way out.
    reset_runtime()
