"""Organizations, users and API keys. Functions flush; the caller's unit of work commits."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import ApiKey, Role, User
from stealth_recovery.core.errors import Conflict, NotFound, Unauthorized
from stealth_recovery.core.security import (
    create_access_token,
    generate_api_key,
    hash_api_key,
    hash_password,
    verify_password,
)
from stealth_recovery.core.time import utc_now
from stealth_recovery.organizations import repository as org_repository
from stealth_recovery.organizations.models import Organization


def _normalise_email(email: str) -> str:
    return email.strip().lower()


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return slug or "org"


def email_taken(session: Session, email: str) -> bool:
    stmt = select(User.id).where(func.lower(User.email) == _normalise_email(email))
    return session.scalar(stmt) is not None


def register(
    session: Session,
    *,
    organization_name: str,
    organization_slug: str | None,
    email: str,
    password: str,
    full_name: str | None,
) -> tuple[Organization, User]:
    """Create an organization and its first admin."""
    if email_taken(session, email):
        raise Conflict("email: already registered")
    if organization_slug is not None:
        if org_repository.slug_taken(session, organization_slug):
            raise Conflict("organization_slug: already taken")
        slug = organization_slug
    else:
        slug = _slugify(organization_name)
        while org_repository.slug_taken(session, slug):
            slug = f"{_slugify(organization_name)[:40]}-{secrets.token_hex(3)}"
    organization = Organization(name=organization_name.strip(), slug=slug)
    session.add(organization)
    session.flush()
    user = _new_user(session, organization.id, email, password, Role.admin, full_name)
    return organization, user


def _new_user(
    session: Session,
    organization_id: int,
    email: str,
    password: str,
    role: Role,
    full_name: str | None,
) -> User:
    user = User(
        organization_id=organization_id,
        email=_normalise_email(email),
        password_hash=hash_password(password),
        role=role,
        full_name=full_name,
        is_active=True,
    )
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict("email: already registered") from None
    return user


def authenticate(session: Session, *, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == _normalise_email(email)))
    if not verify_password(password, user.password_hash if user else None) or user is None:
        raise Unauthorized("incorrect email or password")
    if not user.is_active:
        raise Unauthorized("user is deactivated")
    return user


def issue_token(user: User) -> tuple[str, int]:
    return create_access_token(
        user_id=user.id, organization_id=user.organization_id, role=user.role
    )


def create_user(
    session: Session,
    *,
    organization_id: int,
    email: str,
    password: str,
    role: Role,
    full_name: str | None,
) -> User:
    if email_taken(session, email):
        raise Conflict("email: already registered")
    return _new_user(session, organization_id, email, password, role, full_name)


def list_users(session: Session, *, organization_id: int) -> list[User]:
    stmt = select(User).where(User.organization_id == organization_id).order_by(User.id)
    return list(session.scalars(stmt))


def get_user(session: Session, *, organization_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != organization_id:
        raise NotFound("user not found")
    return user


def deactivate_user(
    session: Session, *, organization_id: int, user_id: int, acting_user_id: int | None
) -> User:
    user = get_user(session, organization_id=organization_id, user_id=user_id)
    if user.id == acting_user_id:
        raise Conflict("user_id: an admin cannot deactivate themselves")
    user.is_active = False
    session.flush()
    return user


def mask_key(api_key: ApiKey) -> str:
    return f"{api_key.prefix}…{api_key.last_four}"


def create_api_key(
    session: Session, *, organization_id: int, name: str, created_by_id: int | None
) -> tuple[ApiKey, str]:
    """Create a key; the plain key is returned once and never stored."""
    plain = generate_api_key()
    api_key = ApiKey(
        organization_id=organization_id,
        name=name,
        prefix=plain[:7],
        last_four=plain[-4:],
        key_hash=hash_api_key(plain),
        created_by_id=created_by_id,
    )
    session.add(api_key)
    session.flush()
    return api_key, plain


def list_api_keys(session: Session, *, organization_id: int) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.organization_id == organization_id).order_by(ApiKey.id)
    return list(session.scalars(stmt))


def revoke_api_key(session: Session, *, organization_id: int, api_key_id: int) -> ApiKey:
    api_key = session.get(ApiKey, api_key_id)
    if api_key is None or api_key.organization_id != organization_id:
        raise NotFound("api key not found")
    if api_key.revoked_at is None:
        api_key.revoked_at = utc_now()
        session.flush()
    return api_key


def resolve_api_key(session: Session, plain: str) -> ApiKey:
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(plain)))
    if api_key is None or api_key.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key")
    api_key.last_used_at = utc_now()
    return api_key
