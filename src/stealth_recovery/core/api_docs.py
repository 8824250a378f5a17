"""The interactive API docs (/docs, /redoc), served offline and under a strict CSP.

The assets come from the installed `fastapi-offline` package, never a CDN. The pages are the
only ones that run script: their `Content-Security-Policy` allows our own files plus the one
inline start-up script each page has, pinned by its SHA-256 hash (CSP Level 2), so no other
inline script can run there either. ReDoc's bundle is served with its one outside address (the
credit line's logo, fetched from Redocly's CDN) removed, so the page asks nothing of the network.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

STATIC_URL = "/static-offline-docs"  # where fastapi-offline mounts its assets
# ReDoc's bundle, served from here without the CDN logo of its credit line.
REDOC_JS_URL = "/api-docs/redoc.standalone.js"
_REDOC_BUNDLE = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
# The credit's <img>; an empty `src` fires its `onError`, on which ReDoc drops the image.
_CDN_LOGO = 'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
_NO_LOGO = 'src:""'
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_content_security_policy(html: str) -> str:
    """The CSP of a docs page: scripts from this origin and the page's inline scripts by hash.

    ReDoc renders in a web worker made from a `blob:` URL, hence `worker-src blob:`.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


@cache
def redoc_bundle() -> bytes:
    """ReDoc's standalone bundle from the installed package, its credit logo's CDN URL removed.

    Raises FileNotFoundError when fastapi-offline no longer ships the bundle.
    """
    return _REDOC_BUNDLE.read_text(encoding="utf-8").replace(_CDN_LOGO, _NO_LOGO).encode()


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    page.headers["Content-Security-Policy"] = docs_content_security_policy(html)
    return page


def add_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` and ReDoc at `/redoc` from the app's OpenAPI document.

    The app must be made by `fastapi_offline.FastAPIOffline(docs_url=None, redoc_url=None)`,
    which mounts the assets at `STATIC_URL`.
    """
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(REDOC_JS_URL, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(
            redoc_bundle(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{REDOC_JS_URL}",
                redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
