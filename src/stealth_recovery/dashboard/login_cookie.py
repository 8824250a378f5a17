"""The dashboard's login cookie and CSRF tokens.

The session cookie holds the same JWT as `/v1/auth/login` (so `auth.deps.get_principal` accepts
it too); it is HttpOnly and SameSite=Lax. Every form carries a signed double-submit token: a
random nonce in its own cookie, and in the form `HMAC(secret, nonce | session cookie)`. A page of
another site can neither read the nonce nor forge the signature, and a token stops working when
the session it was issued for ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy.orm import Session

from stealth_recovery.auth import deps
from stealth_recovery.auth.errors import RoleRequired
from stealth_recovery.auth.models import Role, User
from stealth_recovery.core.errors import Forbidden, Unauthorized
from stealth_recovery.core.settings import get_settings
from stealth_recovery.organizations.models import Organization

SESSION_COOKIE = deps.SESSION_COOKIE
CSRF_COOKIE = "sr_csrf"
CSRF_FIELD = "csrf_token"
DASHBOARD_PREFIX = "/dashboard"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    """The logged-in person a page is rendered for."""

    user: User
    organization: Organization
    principal: deps.Principal

    @property
    def organization_id(self) -> int:
        return self.organization.id

    @property
    def is_admin(self) -> bool:
        return self.principal.role == Role.admin


def _secure_cookies() -> bool:
    return get_settings().public_https


def set_session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(),
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


def csrf_nonce(request: Request) -> str:
    """The nonce of this browser (from its cookie), or a new one the response must set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 16 <= len(existing) <= 128:
        return existing
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce is None:
        nonce = secrets.token_urlsafe(32)
        request.state.new_csrf_nonce = nonce
    return str(nonce)


def set_csrf_cookie_if_new(request: Request, response: Response) -> None:
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce is not None:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            httponly=True,
            samesite="lax",
            secure=_secure_cookies(),
            path=DASHBOARD_PREFIX,
        )


def _sign(nonce: str, session_cookie: str) -> str:
    key = hashlib.sha256(("csrf:" + get_settings().signing_secret()).encode()).digest()
    message = f"{nonce}|{session_cookie}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def csrf_token(request: Request, *, session_cookie: str | None = None) -> str:
    """The token the forms of this page carry."""
    cookie = request.cookies.get(SESSION_COOKIE, "") if session_cookie is None else session_cookie
    return _sign(csrf_nonce(request), cookie)


class FormExpired(Forbidden):
    """The form's CSRF token does not match this browser's nonce and session."""

    type = "form_expired"


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form whose token does not match this browser's nonce and session (403)."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not submitted:
        raise FormExpired("the form has expired; reload the page and try again")
    expected = _sign(nonce, request.cookies.get(SESSION_COOKIE, ""))
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise FormExpired("the form has expired; reload the page and try again")


def safe_next(value: str | None) -> str:
    """Only a path inside the dashboard may follow a login (no open redirect)."""
    if not value:
        return DASHBOARD_PREFIX
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(DASHBOARD_PREFIX):
        return DASHBOARD_PREFIX
    if parts.path.startswith(f"{DASHBOARD_PREFIX}/login"):
        return DASHBOARD_PREFIX
    return value


def current_viewer(request: Request, session: Session) -> Viewer:
    """The person behind the session cookie, or LoginRequired (redirect to the login form)."""
    token = request.cookies.get(SESSION_COOKIE)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise LoginRequired(next_path)
    try:
        principal = deps.principal_for_token(session, token)
    except Unauthorized:
        raise LoginRequired(next_path) from None
    if principal.user_id is None:
        raise LoginRequired(next_path)
    user = session.get(User, principal.user_id)
    organization = session.get(Organization, principal.organization_id)
    if user is None or organization is None:
        raise LoginRequired(next_path)
    return Viewer(user=user, organization=organization, principal=principal)


def require_admin(viewer: Viewer) -> None:
    """The server refuses admin actions to analysts and operators, whatever the page showed."""
    if not viewer.is_admin:
        raise RoleRequired("requires role: admin")
