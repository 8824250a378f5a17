"""`Idempotency-Key` on the API's POST routes: a retried request never makes a second object.

The key is claimed in the request's own unit of work, before the handler runs, and the response
is stored in that same unit of work, after the handler built it and before the commit. So the
key and the effect commit together or not at all: a request that fails (any 4xx or 5xx raised by
the handler) leaves no key, and a committed effect always has its response stored beside it.

Concurrent requests with one key: on PostgreSQL the second `INSERT … ON CONFLICT DO NOTHING`
waits on the first one's uncommitted row and, once it commits, finds the row (with its stored
response) and replays it; on SQLite writers run one at a time (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.concurrency import run_in_threadpool

from stealth_recovery.auth.deps import CurrentPrincipal, get_principal
from stealth_recovery.core.database import Base, SessionDep, UTCDateTime, upsert_into
from stealth_recovery.core.security import decrypt_secret, encrypt_secret
from stealth_recovery.core.time import utc_now

HEADER = "Idempotency-Key"
KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_CLAIM = "sr_idempotency_claim"  # request.scope key: the key this request claimed


class IdempotencyKey(Base):
    """A key an organization sent on a POST, with the response the first request got.

    `fingerprint` is a SHA-256 of the method, the path and the body (JSON compared by value, so
    key order and spacing do not matter). The body is stored encrypted: some responses show a
    secret once (an API key, a webhook signing secret).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    media_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class IdempotentReplay(Exception):
    """The key was used before with this request: answer with the stored response."""

    def __init__(self, status_code: int, body: bytes, media_type: str | None) -> None:
        super().__init__(status_code)
        self.response = Response(body, status_code=status_code, media_type=media_type)
        self.response.headers["Idempotent-Replayed"] = "true"


def _key_error(msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("header", HEADER), "msg": msg, "type": kind}])


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and body (JSON by value)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _valid_key(raw: str) -> str:
    if not raw or len(raw) > MAX_KEY_LENGTH:
        raise _key_error(f"must be 1 to {MAX_KEY_LENGTH} characters", "string_length")
    if not all(33 <= ord(c) <= 126 for c in raw):
        raise _key_error("must be printable ASCII without spaces", "string_pattern")
    return raw


@dataclass
class Claim:
    session: Session
    key_id: int

    def record(self, response: Response) -> None:
        """Store the handler's response beside the key, in the request's unit of work."""
        self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == self.key_id)
            .values(
                status_code=response.status_code,
                media_type=response.media_type,
                response_body=encrypt_secret(bytes(response.body).decode("utf-8", "replace")),
            )
        )


def claim_key(session: Session, *, organization_id: int, key: str, fingerprint: str) -> Claim:
    """Claim `key` for this request, or raise `IdempotentReplay` / a 422 if it was used.

    Race prevented: two requests with one key both running the handler. The unique
    `(organization_id, key)` makes the second INSERT wait for the first unit of work and then
    insert nothing; it reads the committed row (and its response) instead. A key past its
    24 hours is deleted and claimed afresh.
    """
    now = utc_now()
    for _ in range(2):
        key_id = session.execute(
            upsert_into(session, IdempotencyKey)
            .values(
                organization_id=organization_id,
                key=key,
                fingerprint=fingerprint,
                created_at=now,
                expires_at=now + KEY_LIFETIME,
            )
            .on_conflict_do_nothing(index_elements=["organization_id", "key"])
            .returning(IdempotencyKey.id)
        ).scalar_one_or_none()
        if key_id is not None:
            return Claim(session=session, key_id=key_id)
        row = session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.organization_id == organization_id, IdempotencyKey.key == key
            )
        ).scalar_one_or_none()
        if row is None:
            continue  # the holder rolled back: the key is free again
        if row.expires_at <= now:
            session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.id == row.id, IdempotencyKey.expires_at <= now
                )
            )
            continue
        if row.fingerprint != fingerprint:
            raise _key_error(
                "was already used with another request (method, path or body differ); "
                "send a new key for a new request",
                "idempotency_key_reused",
            )
        body = decrypt_secret(row.response_body or "").encode()
        raise IdempotentReplay(row.status_code or 200, body, row.media_type)
    raise _key_error("is being claimed by another request; retry", "idempotency_key_busy")


async def _request_fingerprint(request: Request) -> str:
    if HEADER not in request.headers:
        return ""
    return fingerprint(request.method, request.url.path, await request.body())


async def claim_idempotency_key(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    request_fingerprint: Annotated[str, Depends(_request_fingerprint)],
) -> None:
    """The route dependency: claims the request's `Idempotency-Key`, when it has one.

    Async so that a request without the header costs no hand-off to a worker thread; the claim
    itself (database work) runs in one.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        return
    request.scope[_CLAIM] = await run_in_threadpool(
        claim_key,
        session,
        organization_id=principal.organization_id,
        key=_valid_key(raw),
        fingerprint=request_fingerprint,
    )


def _needs_caller(dependant: Dependant) -> bool:
    return dependant.call is get_principal or any(
        _needs_caller(sub) for sub in dependant.dependencies
    )


class IdempotentRoute(APIRoute):
    """Route class of the API's routers: POST routes with a caller take an `Idempotency-Key`.

    Routes without a caller (login, registration, password reset, provider callbacks) have no
    organization to keep keys for and ignore the header.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in kwargs.get("methods") or ()}
        dependencies = list(kwargs.get("dependencies") or [])
        if (
            "POST" in methods
            and _needs_caller(get_dependant(path=path, call=endpoint))
            and not any(d.dependency is claim_idempotency_key for d in dependencies)
        ):
            dependencies.append(Depends(claim_idempotency_key))
            kwargs["dependencies"] = dependencies
            extra = dict(kwargs.get("openapi_extra") or {})
            extra.setdefault("parameters", []).append(_HEADER_DOC)
            kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except IdempotentReplay as replay:
                return replay.response
            claim: Claim | None = request.scope.get(_CLAIM)
            if claim is not None:
                await run_in_threadpool(claim.record, response)
            return response

        return handle


def uses_idempotency(route: APIRoute) -> bool:
    return any(d.call is claim_idempotency_key for d in route.dependant.dependencies)


_HEADER_DOC: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Any unique string (a UUID): the same key with the same body within 24 hours "
    "answers with the first response (status and body) and changes nothing; with another body "
    "it is a 422.",
    "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
}
