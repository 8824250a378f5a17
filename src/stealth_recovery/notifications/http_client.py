"""What the HTTP providers (Twilio, WhatsApp Cloud API) share: a pooled client, error triage."""

from __future__ import annotations

import asyncio
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.errors import (
    AmbiguousSendError,
    SendError,
    TransientSendError,
)
from stealth_recovery.notifications.types import HandOver


class PooledClient:
    """One `httpx.AsyncClient` (keep-alive connection pool) per event loop.

    httpx connections belong to the loop that opened them; a notifier reused from another
    loop (the embedded scheduler runs one loop per tick) gets a fresh client there.
    """

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        self._timeout = timeout
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


# Failures that prove the request never reached the provider: safe to try again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


async def post(
    client: PooledClient, url: str, *, handover: HandOver | None = None, **kwargs: object
) -> httpx.Response:
    """POST, calling `handover` right before the request; triages transport failures.

    A failure to connect is transient (the provider never saw the request). A timeout or a
    broken connection once the request may have been sent (read/write timeout, reset, hang-up)
    is `AmbiguousSendError`: the provider may have accepted the message, so it is not resent.
    """
    if handover is not None:
        await handover()
    try:
        return await client.get().post(url, **kwargs)  # type: ignore[arg-type]
    except _NOT_SENT as exc:
        raise TransientSendError(
            f"connection error calling {httpx.URL(url).host}: {type(exc).__name__}"
        ) from exc
    except httpx.TimeoutException as exc:
        raise AmbiguousSendError(
            f"timeout waiting for {httpx.URL(url).host} after the request was sent"
        ) from exc
    except httpx.TransportError as exc:
        raise AmbiguousSendError(
            f"connection lost after the request was sent: {type(exc).__name__}: {exc}"
        ) from exc


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds or an HTTP date), when present."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - utc_now()).total_seconds())


def is_transient_status(status_code: int) -> bool:
    return status_code == 429 or status_code >= 500


def transient_http_error(response: httpx.Response, message: str) -> SendError:
    return TransientSendError(message, retry_after=retry_after_seconds(response))


def json_or_empty(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
