"""The Celery application (`stealth-recovery worker`, `beat` and `flower` start it)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from stealth_recovery.core.settings import get_settings


def create_celery() -> Celery:
    settings = get_settings()
    app = Celery(
        "stealth_recovery",
        broker=settings.broker_url or "memory://",
        backend=settings.result_backend,
        include=[
            "stealth_recovery.retry.tasks",
            "stealth_recovery.integrations.stripe.tasks",
            "stealth_recovery.webhooks.tasks",
        ],
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # A task is acknowledged only when done; one lost with its worker is delivered again
        # (and is a no-op if its step was recorded meanwhile).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=540,
        task_time_limit=600,
        # Above the longest task, so Redis does not hand a running task to a second worker.
        broker_transport_options={"visibility_timeout": 3600},
        task_ignore_result=True,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule={
            "process-retry-queue": {
                "task": "retry.process_retry_queue",
                "schedule": settings.beat_queue_interval_seconds,
                # A tick that waited longer than a period is useless: the next one comes.
                "options": {"expires": settings.beat_queue_interval_seconds},
            },
            # An attempt that ended by any route must not leave a Checkout that takes money.
            "close-ended-checkouts": {
                "task": "stripe.close_ended_checkouts",
                "schedule": settings.beat_queue_interval_seconds,
                "options": {"expires": settings.beat_queue_interval_seconds},
            },
            "deliver-webhooks": {
                "task": "webhooks.deliver_due",
                "schedule": settings.webhook_sweep_seconds,
                "options": {"expires": settings.webhook_sweep_seconds},
            },
            "cleanup-expired-attempts": {
                "task": "retry.cleanup_expired_attempts",
                "schedule": crontab(hour=2, minute=0),
            },
        },
    )
    return app


celery_app = create_celery()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_celery_logs(logger: Any = None, **_: Any) -> None:
    # Celery replaces the root handlers with its own: they get the same redaction as ours.
    import logging

    from stealth_recovery.core.logging import current_redactor, install_filter

    target = logger if isinstance(logger, logging.Logger) else logging.getLogger()
    install_filter(target.handlers, current_redactor())


@worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    # Sends happen in the worker processes, so their counters and latency histograms are
    # served here, summed over the prefork children (prometheus_client multiprocess mode).
    port = get_settings().worker_metrics_port
    if not port or "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # Sockets inherited from the parent must not be shared with the child.
    from stealth_recovery.core import database

    if database._engine is not None:
        database._engine.dispose(close=False)


@worker_process_shutdown.connect
def _mark_metrics_process_dead(**_: Any) -> None:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
