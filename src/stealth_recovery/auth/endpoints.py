from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request, Response, status

from stealth_recovery.auth import service
from stealth_recovery.auth.deps import AdminPrincipal, CurrentPrincipal, UserPrincipal
from stealth_recovery.auth.idempotency import IdempotentRoute
from stealth_recovery.auth.models import ApiKey, User
from stealth_recovery.auth.schemas import (
    Accepted,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    MeResponse,
    OrganizationOut,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
    UserCreate,
    UserOut,
)
from stealth_recovery.auth.throttle import throttled_login
from stealth_recovery.core.api import DbId, error_responses
from stealth_recovery.core.database import ReadSessionDep, SessionDep
from stealth_recovery.core.mail import send_service_email
from stealth_recovery.core.settings import get_settings
from stealth_recovery.organizations.models import Organization

router = APIRouter(prefix="/v1", tags=["auth"], route_class=IdempotentRoute)

_ERR_401 = error_responses(401)
_ERR_403 = error_responses(403)


def _api_key_out(api_key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=api_key.id,
        name=api_key.name,
        masked_key=service.mask_key(api_key),
        created_at=api_key.created_at,
        last_used_at=api_key.last_used_at,
        revoked_at=api_key.revoked_at,
    )


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisterResponse,
    responses=error_responses(
        403,
        409,
        422,
        e403="registration is closed on this server (REGISTRATION=closed)",
        e409="email or slug already taken",
    ),
)
def register(body: RegisterRequest, session: SessionDep) -> RegisterResponse:
    """Create an organization and its first admin, and log the admin in.

    Open to anyone, to holders of an invite code, or closed, as the server's REGISTRATION says.
    """
    organization, user = service.register_by_request(
        session,
        invite_code=body.invite_code,
        organization_name=body.organization_name,
        organization_slug=body.organization_slug,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
    )
    token, expires_in = service.issue_token(user)
    return RegisterResponse(
        organization=OrganizationOut.model_validate(organization),
        user=UserOut.model_validate(user),
        access_token=token,
        expires_in=expires_in,
    )


@router.post(
    "/auth/login",
    response_model=TokenResponse,
    responses=error_responses(
        401, 422, 429, e429="too many logins from this address, or failures for this account"
    ),
)
def login(body: LoginRequest, request: Request, session: ReadSessionDep) -> TokenResponse:
    """Exchange email and password for a bearer JWT (`sub`, `org_id`, `role`, `exp`).

    Throttled per client address and per account (429 with Retry-After).
    """
    user = throttled_login(
        request,
        body.email,
        lambda: service.authenticate(session, email=body.email, password=body.password),
    )
    token, expires_in = service.issue_token(user)
    return TokenResponse(access_token=token, expires_in=expires_in)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 403),
)
def logout(principal: UserPrincipal, session: SessionDep) -> Response:
    """End the user's sessions: every token issued to them so far is refused from now on."""
    assert principal.user_id is not None
    service.logout(session, user_id=principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password",
    response_model=TokenResponse,
    responses=error_responses(
        401, 403, 422, e422="current_password wrong, or new_password too short or guessable"
    ),
)
def change_password(
    body: PasswordChange, principal: UserPrincipal, session: SessionDep
) -> TokenResponse:
    """Change one's own password. Every earlier token stops working; use the one returned."""
    assert principal.user_id is not None
    user = service.change_password(
        session,
        user_id=principal.user_id,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    token, expires_in = service.issue_token(user)
    return TokenResponse(access_token=token, expires_in=expires_in)


RESET_ACCEPTED = "if the address has an account, a reset link is on its way"


def reset_email_text(link: str, minutes: int) -> str:
    return (
        "Someone asked to reset the password of your Stealth Recovery account.\n\n"
        f"Choose a new password here (the link works once, for {minutes} minutes):\n{link}\n\n"
        "If it was not you, ignore this message: your password stays as it is.\n"
    )


def reset_link(token: str) -> str:
    """The dashboard page where the holder of a reset token chooses a new password."""
    return get_settings().external_url(f"/dashboard/reset-password?token={token}")


@router.post(
    "/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(422),
)
def request_password_reset(
    body: PasswordResetRequest, session: SessionDep, background: BackgroundTasks
) -> Accepted:
    """E-mail a single-use, expiring reset link. The answer is the same for every address."""
    requested = service.request_password_reset(session, email=str(body.email))
    if requested is not None:
        user, token = requested
        settings = get_settings()
        link = reset_link(token)
        # After the response (and so after the commit): the token exists when the mail arrives,
        # and the answer takes as long for an unknown address as for a known one.
        background.add_task(
            send_service_email,
            to=user.email,
            subject="Reset your Stealth Recovery password",
            text=reset_email_text(link, settings.password_reset_ttl_minutes),
        )
    return Accepted(detail=RESET_ACCEPTED)


@router.post(
    "/auth/password-reset/confirm",
    response_model=TokenResponse,
    responses=error_responses(
        422, e422="token unknown, expired or used; or new_password too short or guessable"
    ),
)
def confirm_password_reset(body: PasswordResetConfirm, session: SessionDep) -> TokenResponse:
    """Set a new password with the token from the e-mail; every earlier session ends."""
    user = service.reset_password(session, token=body.token, new_password=body.new_password)
    token, expires_in = service.issue_token(user)
    return TokenResponse(access_token=token, expires_in=expires_in)


@router.get("/auth/me", response_model=MeResponse, responses=_ERR_401)
def me(principal: CurrentPrincipal, session: SessionDep) -> MeResponse:
    """Who the credentials belong to."""
    organization = session.get(Organization, principal.organization_id)
    assert organization is not None
    user = session.get(User, principal.user_id) if principal.user_id else None
    return MeResponse(
        user=UserOut.model_validate(user) if user else None,
        organization=OrganizationOut.model_validate(organization),
        role=principal.role,
        auth="api_key" if principal.is_api_key else "jwt",
    )


@router.get("/users", response_model=list[UserOut], responses={**_ERR_401, **_ERR_403})
def list_users(principal: AdminPrincipal, session: SessionDep) -> list[User]:
    """The organization's users (admin)."""
    return service.list_users(session, organization_id=principal.organization_id)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(401, 403, 409, 422, e409="email already registered"),
)
def create_user(body: UserCreate, principal: AdminPrincipal, session: SessionDep) -> User:
    """Add a user with a role (admin)."""
    return service.create_user(
        session,
        organization_id=principal.organization_id,
        email=body.email,
        password=body.password,
        role=body.role,
        full_name=body.full_name,
    )


@router.post(
    "/users/{user_id}/deactivate",
    response_model=UserOut,
    responses=error_responses(
        401, 403, 404, 409, 422, e404="no such user", e409="an admin cannot deactivate themselves"
    ),
)
def deactivate_user(user_id: DbId, principal: AdminPrincipal, session: SessionDep) -> User:
    """Deactivate a user: their tokens stop working at once (admin)."""
    return service.deactivate_user(
        session,
        organization_id=principal.organization_id,
        user_id=user_id,
        acting_user_id=principal.user_id,
    )


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(401, 403, 422),
)
def create_api_key(
    body: ApiKeyCreate, principal: AdminPrincipal, session: SessionDep
) -> ApiKeyCreated:
    """Create an API key (admin). The key is in this response only; store it now."""
    api_key, plain = service.create_api_key(
        session,
        organization_id=principal.organization_id,
        name=body.name,
        created_by_id=principal.user_id,
    )
    return ApiKeyCreated(**_api_key_out(api_key).model_dump(), key=plain)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses={**_ERR_401, **_ERR_403})
def list_api_keys(principal: AdminPrincipal, session: SessionDep) -> list[ApiKeyOut]:
    """The organization's API keys, masked (admin)."""
    keys = service.list_api_keys(session, organization_id=principal.organization_id)
    return [_api_key_out(k) for k in keys]


@router.delete(
    "/api-keys/{api_key_id}",
    response_model=ApiKeyOut,
    responses=error_responses(401, 403, 404, 422, e404="no such API key"),
)
def revoke_api_key(api_key_id: DbId, principal: AdminPrincipal, session: SessionDep) -> ApiKeyOut:
    """Revoke an API key at once (admin). The row is kept for the audit trail."""
    api_key = service.revoke_api_key(
        session, organization_id=principal.organization_id, api_key_id=api_key_id
    )
    return _api_key_out(api_key)
