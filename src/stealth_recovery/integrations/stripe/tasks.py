"""Periodic Stripe work: expire the Checkout Sessions of attempts that ended."""

from __future__ import annotations

from stealth_recovery.core.database import session_scope
from stealth_recovery.integrations.stripe import service
from stealth_recovery.worker import celery_app


def sweep_ended_checkouts() -> int:
    """One pass of `service.close_ended_checkouts` in its own unit of work (the embedded
    scheduler's tick and the Celery task both run it)."""
    with session_scope() as session:
        return service.close_ended_checkouts(session)


@celery_app.task(name="stripe.close_ended_checkouts")
def close_ended_checkouts() -> int:
    """Expire the Checkout Sessions of ended attempts (Beat, with the retry queue's period)."""
    return sweep_ended_checkouts()
