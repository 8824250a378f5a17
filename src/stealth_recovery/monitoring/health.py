"""`/healthz`: whether the database (and Redis, when configured) answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from stealth_recovery import __version__
from stealth_recovery.core.database import get_engine
from stealth_recovery.core.settings import get_settings

router = APIRouter(tags=["health"])


def health() -> dict[str, Any]:
    settings = get_settings()
    result: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        result["database"] = "ok"
    except Exception as exc:  # health reports, it does not raise
        result["database"] = f"error: {type(exc).__name__}"
        result["status"] = "degraded"
    if settings.redis_url:
        import redis

        try:
            redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
            result["redis"] = "ok"
        except Exception as exc:
            result["redis"] = f"error: {type(exc).__name__}"
            result["status"] = "degraded"
    return result


@router.get(
    "/healthz",
    responses={
        200: {
            "description": "everything answers",
            "content": {
                "application/json": {
                    "example": {"status": "ok", "version": __version__, "database": "ok"}
                }
            },
        },
        503: {
            "description": "the database (or Redis) does not answer",
            "content": {
                "application/json": {
                    "example": {
                        "status": "degraded",
                        "version": __version__,
                        "database": "ok",
                        "redis": "error: ConnectionError",
                    }
                }
            },
        },
    },
)
def healthz() -> JSONResponse:
    """Database (and Redis when configured) reachability."""
    body = health()
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
