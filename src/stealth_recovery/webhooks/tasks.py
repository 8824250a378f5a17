"""Delivery on the Celery layout: Beat runs a pass every WEBHOOK_SWEEP_SECONDS, and the API
queues one after each commit that wrote events."""

from __future__ import annotations

from stealth_recovery.core.settings import get_settings
from stealth_recovery.webhooks.delivery import deliver_due
from stealth_recovery.worker import celery_app


@celery_app.task(name="webhooks.deliver_due")
def deliver_due_task() -> int:
    """Send every due webhook delivery (Beat, and after events are committed)."""
    return deliver_due()


def queue_pass() -> None:
    """Ask a worker for a pass soon (an after-commit job: a broker error is logged there)."""
    deliver_due_task.apply_async(expires=get_settings().webhook_sweep_seconds * 2)
