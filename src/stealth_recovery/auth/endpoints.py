from __future__ import annotations

from fastapi import APIRouter, status

from stealth_recovery.auth import service
from stealth_recovery.auth.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from stealth_recovery.auth.models import ApiKey, User
from stealth_recovery.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    MeResponse,
    OrganizationOut,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
    UserCreate,
    UserOut,
)
from stealth_recovery.core.api import DbId, error_responses
from stealth_recovery.organizations.models import Organization

router = APIRouter(prefix="/v1", tags=["auth"])

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
    responses=error_responses(409, 422, e409="email or slug already taken"),
)
def register(body: RegisterRequest, session: SessionDep) -> RegisterResponse:
    """Create an organization and its first admin, and log the admin in."""
    organization, user = service.register(
        session,
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


@router.post("/auth/login", response_model=TokenResponse, responses=error_responses(401, 422))
def login(body: LoginRequest, session: SessionDep) -> TokenResponse:
    """Exchange email and password for a bearer JWT (`sub`, `org_id`, `role`, `exp`)."""
    user = service.authenticate(session, email=body.email, password=body.password)
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
