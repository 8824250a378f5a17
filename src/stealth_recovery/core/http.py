"""ASGI middleware every request passes: URLs and bodies no route can take, load shedding,
security headers.

Pure ASGI (no `BaseHTTPMiddleware`), so responses stream through untouched apart from their
headers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

import anyio
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No script at all is served (the pages are plain HTML), so none is allowed; styles are our own
# stylesheet plus the inline ones of the templates. `frame-ancestors` stops clickjacking, and
# `form-action` is left open because the pay button's POST redirects to Stripe Checkout.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=63072000"  # two years, without includeSubDomains: the host is all we know of


class BodyTooLarge(HTTPException):
    """The request body passed `MAX_BODY_BYTES` while it was being read (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


async def _send_json(
    send: Send, status: int, detail: str, kind: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail, "type": kind}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGateMiddleware:
    """Refuse, before any route runs or any body byte is read, what no route can take.

    - A NUL character in the path or query string: 400. No id, token, slug or filter can hold
      one, and PostgreSQL text cannot store one, so it can never reach a query.
    - A body above `max_body_bytes`: 413 before it is read whole. A `Content-Length` above
      the limit is refused before one byte is read; a chunked (or under-declared) body is
      counted as it streams, and `receive` raises `BodyTooLarge` (an HTTPException, so the
      app's error handler answers) as soon as it passes the limit.
    Every refusal answers in the service's JSON error format. (FastAPI's own `max_body_size`
    answers a declared-too-large body in plain text, outside that format; hence this.)
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(
            scope.get("query_string", b"")
        ):
            await _send_json(send, 400, "the URL must not contain NUL characters", "invalid_url")
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_json(send, 413, BodyTooLarge(limit).detail, "request_too_large")
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_json(send, 413, exc.detail, "request_too_large")


class LoadSheddingMiddleware:
    """At most `slots` requests run at once; one that waits longer than `wait_seconds` for a
    slot is refused at once: 503 with `Retry-After`, in the service's JSON error format.

    `slots` is the database pool's size, and AnyIO's thread pool (where FastAPI runs sync
    dependencies and endpoints) is sized to it too (`size_thread_pool`). Every admitted request
    then finds a thread whenever it needs one, so none holds a connection, its transaction open,
    while it waits for a thread; and requests above what the pool can serve are told to come
    back instead of queueing until the pool's 30 s timeout fails them all. Without the gate, a
    burst bigger than the thread pool left every thread waiting for a connection held by a
    request that waited for a thread: at 500 req/s one request in 10,000 completed.
    """

    def __init__(
        self, app: ASGIApp, *, slots: int, wait_seconds: float, retry_after_seconds: int = 1
    ) -> None:
        self.app = app
        self.slots = slots
        self.wait_seconds = wait_seconds
        self.retry_after = str(retry_after_seconds).encode()
        self._semaphore: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # made in the server's event loop
            self._semaphore = anyio.Semaphore(self.slots)
        admitted = False
        with anyio.move_on_after(self.wait_seconds):
            await self._semaphore.acquire()
            admitted = True
        if not admitted:
            await _send_json(
                send,
                503,
                "the service is busy; retry after the time in Retry-After",
                "service_busy",
                [(b"retry-after", self.retry_after)],
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._semaphore.release()


def size_thread_pool(threads: int) -> None:
    """Give AnyIO's default thread pool (sync endpoints and dependencies) `threads` threads;
    called in the running event loop (the app's lifespan)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


class SecurityHeadersMiddleware:
    """Headers that keep pages and tokens where they belong, on every response.

    Every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (a pay
    link's token is in its path and must not travel to another site in `Referer`), and with an
    https `BASE_URL` `Strict-Transport-Security` plus `Secure` on every cookie set. HTML pages
    also get the `Content-Security-Policy` above and `X-Frame-Options: DENY`.
    """

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                    headers.setdefault("X-Frame-Options", "DENY")
                if self.https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                    _secure_cookies(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_cookies(headers: MutableHeaders) -> None:
    cookies = headers.getlist("set-cookie")
    if not cookies:
        return
    del headers["set-cookie"]
    for cookie in cookies:
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        headers.append("set-cookie", cookie if "secure" in attributes else f"{cookie}; Secure")
