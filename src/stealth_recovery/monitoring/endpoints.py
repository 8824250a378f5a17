"""`/metrics` for Prometheus, and the middleware that counts and times every HTTP request.

Request metrics are labelled by the route *template* (`/v1/retry/attempts/{attempt_id}`), never
the raw path, so ids and tokens cannot blow up the number of series. The queue depth is one
COUNT on the partial index of due open attempts, run at scrape time.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stealth_recovery.core import metrics
from stealth_recovery.core.api import error_responses
from stealth_recovery.core.database import session_scope
from stealth_recovery.core.errors import Unauthorized
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import repository as attempts_repository

UNMATCHED = "<unmatched>"

router = APIRouter(tags=["health"])


def due_now_count() -> int:
    """Open attempts whose next step is due and not claimed (a claim pushes it to the lease end)."""
    with session_scope() as session:
        return attempts_repository.count_due(session, now=utc_now())


_scraper = HTTPBearer(auto_error=False, description="METRICS_TOKEN, when one is configured")


class MetricsTokenRequired(Unauthorized):
    type = "metrics_token_required"


def require_scrape_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scraper)],
) -> None:
    """With `METRICS_TOKEN` set, a scrape must send `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = get_settings().metrics_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise MetricsTokenRequired("/metrics needs the bearer token of METRICS_TOKEN")


_EXAMPLE_SCRAPE = 'stealth_recovery_messages_total{channel="email",status="sent"} 42.0\n'


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_scrape_token)],
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"example": _EXAMPLE_SCRAPE}},
        },
        **error_responses(401, e401="METRICS_TOKEN is set and the bearer token does not match"),
    },
)
def prometheus_metrics() -> Response:
    """Prometheus text format: messages, reminder steps, queue depth, latencies, HTTP.

    Open unless `METRICS_TOKEN` is set; then `Authorization: Bearer <token>` is required.
    """
    metrics.QUEUE_DEPTH.set(due_now_count())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class HttpMetricsMiddleware:
    """Pure ASGI, so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = str(scope.get("method", "GET"))
            route = route_label(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
