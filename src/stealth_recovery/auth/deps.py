"""Who is calling: the one dependency every route scopes its queries by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from stealth_recovery.auth import service
from stealth_recovery.auth.errors import (
    InvalidApiKey,
    NotAuthenticated,
    RoleRequired,
    SessionEnded,
    UserDeactivated,
    UserLoginRequired,
)
from stealth_recovery.auth.models import Role
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.security import API_KEY_PREFIX, decode_access_token

SESSION_COOKIE = "sr_session"

_bearer = HTTPBearer(auto_error=False, description="JWT from /v1/auth/login, or an API key sk_…")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True)
class Principal:
    organization_id: int
    role: str  # admin / analyst / operator, or "api_key" for a server credential
    user_id: int | None = None
    api_key_id: int | None = None
    # The organization's `policy_stamp`, read with the caller (see `retry.policy`).
    policy_stamp: int | None = None

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None


def principal_for_token(session: Session, token: str) -> Principal:
    """Who a bearer token (JWT or API key) or the dashboard's session cookie belongs to (401)."""
    if token.startswith(API_KEY_PREFIX):
        holder = service.resolve_api_key(session, token)
        return Principal(
            organization_id=holder.api_key.organization_id,
            role="api_key",
            api_key_id=holder.api_key.id,
            policy_stamp=holder.policy_stamp,
        )
    claims = decode_access_token(token)
    found = service.user_with_policy_stamp(session, user_id=claims.user_id)
    user, stamp = found if found is not None else (None, None)
    if user is None or not user.is_active or user.organization_id != claims.organization_id:
        raise UserDeactivated("user is deactivated or unknown")
    if user.token_version != claims.version:
        # Logout, deactivation or a password change since this token was issued.
        raise SessionEnded("session has ended; sign in again")
    # The role is read from the row, so a changed role takes effect before the token expires.
    return Principal(
        organization_id=user.organization_id, role=user.role, user_id=user.id, policy_stamp=stamp
    )


def get_principal(
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """The API's caller: a bearer token or an API key, never the dashboard's cookie.

    The session cookie is sent by the browser on its own, so a /v1 write authenticated by it
    could be forged by another site; the API accepts only credentials a script must add.
    """
    if bearer is not None:
        return principal_for_token(session, bearer.credentials)
    if api_key:
        if not api_key.startswith(API_KEY_PREFIX):
            raise InvalidApiKey("invalid or revoked API key")
        return principal_for_token(session, api_key)
    raise NotAuthenticated("not authenticated")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that lets through only the given roles (403 for others)."""

    # Async: a check without I/O needs no hand-off to a worker thread.
    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise RoleRequired(f"requires role: {' or '.join(roles)}")
        return principal

    return check


async def require_user(principal: CurrentPrincipal) -> Principal:
    if principal.user_id is None:
        raise UserLoginRequired("requires a user login, not an API key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.admin))]
UserPrincipal = Annotated[Principal, Depends(require_user)]
# Failed-payment ingestion: a server's API key, or a person who may act on attempts.
IngestPrincipal = Annotated[Principal, Depends(require_roles(Role.admin, Role.operator, "api_key"))]
# Marking a payment as made: a server's API key or an admin.
AdminOrApiKeyPrincipal = Annotated[Principal, Depends(require_roles(Role.admin, "api_key"))]
