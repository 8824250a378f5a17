"""The FastAPI application: routers and the error handlers (`core.api`).

`stealth_recovery.app:app` is the application as the environment configures it, built on first
access: what `serve` runs in each of its processes, and what any other ASGI server can import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache, partial
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from stealth_recovery import __version__
from stealth_recovery.auth.endpoints import router as auth_router
from stealth_recovery.core.api import add_error_handlers
from stealth_recovery.core.api_docs import STATIC_URL, add_api_docs
from stealth_recovery.core.database import connections_per_process, get_engine
from stealth_recovery.core.http import (
    LoadSheddingMiddleware,
    RequestGateMiddleware,
    SecurityHeadersMiddleware,
    size_thread_pool,
)
from stealth_recovery.core.leadership import Leadership, send_wake
from stealth_recovery.core.logging import configure_logging
from stealth_recovery.core.settings import get_settings
from stealth_recovery.dashboard.endpoints import router as dashboard_router
from stealth_recovery.ingestion.endpoints import router as payments_router
from stealth_recovery.integrations.stripe.endpoints import router as stripe_router
from stealth_recovery.monitoring.endpoints import HttpMetricsMiddleware
from stealth_recovery.monitoring.endpoints import router as metrics_router
from stealth_recovery.monitoring.health import router as health_router
from stealth_recovery.notifications.endpoints import router as provider_callbacks_router
from stealth_recovery.paylink.endpoints import router as pay_link_api_router
from stealth_recovery.paylink.pages import router as pay_pages_router
from stealth_recovery.recovery.endpoints import router as attempts_router
from stealth_recovery.retry.endpoints import router as retry_router
from stealth_recovery.webhooks.endpoints import router as webhooks_router
from stealth_recovery.webhooks.service import off_new_events, on_new_events

log = structlog.get_logger(__name__)


def create_app(*, run_scheduler: bool = False) -> FastAPI:
    settings = get_settings()
    # As many requests at once as the process has database connections, each with a thread.
    slots = connections_per_process()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        size_thread_pool(slots)
        loops = _BackgroundLoops() if run_scheduler else None
        if loops is not None:
            loops.start()
        elif settings.uses_celery:
            from stealth_recovery.webhooks.tasks import queue_pass

            on_new_events(queue_pass)
        try:
            yield
        finally:
            if loops is not None:
                loops.stop()

    # /docs and /redoc load Swagger UI and ReDoc from the installed fastapi-offline package,
    # never from a CDN (a self-hosted install often has no route to one), under a CSP that pins
    # their inline start-up scripts by hash (core/api_docs.py).
    app = FastAPIOffline(
        title="Stealth Recovery",
        version=__version__,
        description="Wins back failed payments: expiring pay links and reminders by email, "
        "SMS and WhatsApp on each merchant's retry policy.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        static_url=STATIC_URL,
    )
    add_api_docs(app)
    add_error_handlers(app)
    # Innermost: a shed request is still counted, and still gets the security headers.
    app.add_middleware(
        LoadSheddingMiddleware, slots=slots, wait_seconds=settings.shed_after_seconds
    )
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestGateMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.public_https)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        """People who open the bare address land on the dashboard (its login when signed out)."""
        return RedirectResponse("/dashboard", status_code=307)

    # In the order they appear in the OpenAPI document.
    for router in (
        health_router,
        auth_router,
        payments_router,
        attempts_router,
        pay_link_api_router,
        retry_router,
        webhooks_router,
        pay_pages_router,
        metrics_router,
        dashboard_router,
        stripe_router,
        provider_callbacks_router,
    ):
        app.include_router(router)
    return app


class _BackgroundLoops:
    """The embedded scheduler and the webhook delivery loop, in one process of all that serve.

    On SQLite (one process) they run here. On PostgreSQL `serve --workers N` starts this in each
    process, and only the holder of the loops' advisory lock runs them (`core.leadership`);
    every process wakes them through `NOTIFY`, wherever they run.
    """

    def __init__(self) -> None:
        from stealth_recovery.integrations.stripe.tasks import sweep_ended_checkouts
        from stealth_recovery.retry.scheduler import EmbeddedScheduler
        from stealth_recovery.webhooks.scheduler import DeliveryLoop

        self.scheduler = EmbeddedScheduler.from_settings(extra_jobs=[sweep_ended_checkouts])
        self.deliveries = DeliveryLoop.from_settings()
        self.leadership: Leadership | None = None
        self._waker: Callable[[], None] | None = None
        self._running = False

    def start(self) -> None:
        from stealth_recovery.retry.scheduler import wake_through

        if get_settings().is_sqlite:
            self._waker = self.deliveries.wake
            on_new_events(self._waker)
            self._run()
            return
        engine = get_engine()
        wakes = {"scheduler": self.scheduler.wake, "deliveries": self.deliveries.wake}
        self._waker = partial(send_wake, engine, "deliveries")
        on_new_events(self._waker)
        wake_through(partial(send_wake, engine, "scheduler"))
        self.leadership = Leadership(
            get_settings().sqlalchemy_url,
            lead=self._run,
            on_wake=lambda kind: wakes.get(kind, self.scheduler.wake)(),
        )
        self.leadership.start()

    def _run(self) -> None:
        self._running = True
        self.scheduler.start()
        self.deliveries.start()

    def stop(self) -> None:
        from stealth_recovery.retry.scheduler import wake_through

        if self._waker is not None:
            off_new_events(self._waker)
        if self.leadership is not None:
            self.leadership.stop()
            wake_through(None)
        if self._running:
            self.deliveries.stop()
            self.scheduler.stop()


def __getattr__(name: str) -> Any:
    if name == "app":
        return configured_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def configured_app() -> FastAPI:
    """The application from the settings: logging configured, the embedded scheduler and the
    webhook delivery loop in-process unless Celery (Redis) runs the queue."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(run_scheduler=not settings.uses_celery and settings.embedded_scheduler)
