"""ASGI middleware every request passes: URLs the database cannot hold, security headers.

Pure ASGI (no `BaseHTTPMiddleware`), so responses stream through untouched apart from their
headers. The body size limit is FastAPI's own (`FastAPI(max_body_size=…)`, see `app.py`).
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No script at all is served (the pages are plain HTML), so none is allowed; styles are our own
# stylesheet plus the inline ones of the templates. `frame-ancestors` stops clickjacking, and
# `form-action` is left open because the pay button's POST redirects to Stripe Checkout.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=63072000"  # two years, without includeSubDomains: the host is all we know of


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class UrlWithoutNulMiddleware:
    """A NUL character in the path or query string is a 400 before any route runs.

    No id, token, slug or filter can contain one, and PostgreSQL text cannot hold one: refused
    here, it can never reach a query as a database error, whatever the route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "")
            or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            await _send_json(send, 400, "the URL must not contain NUL characters")
            return
        await self.app(scope, receive, send)


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
