"""The dashboard's stylesheet."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import FileResponse

from stealth_recovery.dashboard.page import HERE, page_router

STATIC_FILES = {"dashboard.css": "text/css"}

router = page_router()


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=3600"},
    )
