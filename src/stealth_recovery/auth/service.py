"""Organizations, users and API keys. Functions flush; the caller's unit of work commits."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from stealth_recovery.auth.errors import (
    ApiKeyNotFound,
    CannotDeactivateSelf,
    EmailTaken,
    InvalidApiKey,
    InvalidCredentials,
    InviteInvalid,
    OrganizationSlugTaken,
    RegistrationClosed,
    ResetLinkInvalid,
    UserDeactivated,
    UserNotFound,
    WrongCurrentPassword,
)
from stealth_recovery.auth.models import ApiKey, PasswordReset, RegistrationInvite, Role, User
from stealth_recovery.auth.passwords import check_password
from stealth_recovery.core.database import end_idle_transaction
from stealth_recovery.core.security import (
    create_access_token,
    generate_api_key,
    hash_api_key,
    hash_password,
    verify_password,
)
from stealth_recovery.core.settings import get_settings
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
    """Create an organization and its first admin (422 on a guessable password)."""
    password_hash = _new_password_hash(
        session, password, user_inputs=[email, organization_name, full_name]
    )
    return _register(
        session,
        organization_name=organization_name,
        organization_slug=organization_slug,
        email=email,
        password_hash=password_hash,
        full_name=full_name,
    )


def _new_password_hash(
    session: Session, password: str, *, user_inputs: list[str | None], field: str = "password"
) -> str:
    """Check a new password's strength (422 on `field`) and hash it, outside any write lock.

    On SQLite a writer's first statement takes the write lock: hashing comes before this unit
    of work writes anything, and a transaction that has only read so far (the caller's
    authentication) is ended first (`end_idle_transaction`), so no one waits on argon2.
    """
    end_idle_transaction(session)
    check_password(password, user_inputs=user_inputs, field=field)
    return hash_password(password)


def _register(
    session: Session,
    *,
    organization_name: str,
    organization_slug: str | None,
    email: str,
    password_hash: str,
    full_name: str | None,
) -> tuple[Organization, User]:
    if email_taken(session, email):
        raise EmailTaken("email: already registered")
    if organization_slug is not None:
        if org_repository.slug_taken(session, organization_slug):
            raise OrganizationSlugTaken("organization_slug: already taken")
        slug = organization_slug
    else:
        slug = _slugify(organization_name)
        while org_repository.slug_taken(session, slug):
            slug = f"{_slugify(organization_name)[:40]}-{secrets.token_hex(3)}"
    organization = Organization(name=organization_name.strip(), slug=slug)
    session.add(organization)
    session.flush()
    user = _new_user(session, organization.id, email, password_hash, Role.admin, full_name)
    return organization, user


def register_by_request(
    session: Session,
    *,
    organization_name: str,
    organization_slug: str | None,
    email: str,
    password: str,
    full_name: str | None,
    invite_code: str | None,
) -> tuple[Organization, User]:
    """Self-service registration, as far as REGISTRATION allows it.

    `closed`: 403 (an operator runs `stealth-recovery create-admin`). `invite`: the invite code
    must be unused and unexpired, and is spent by this registration (422 on `invite_code`
    otherwise). `open`: anyone.
    """
    mode = get_settings().registration_mode
    if mode == "closed":
        raise RegistrationClosed(
            "registration is closed on this server; its operator creates organizations "
            "with `stealth-recovery create-admin`"
        )
    if mode == "invite" and not invite_code:
        raise InviteInvalid("invite_code", "is required: registration is by invitation")
    # Hashed before the invite is spent: spending it is this unit of work's first write.
    password_hash = _new_password_hash(
        session, password, user_inputs=[email, organization_name, full_name]
    )
    invite: RegistrationInvite | None = None
    if mode == "invite":
        assert invite_code  # checked above
        invite = _spend_invite(session, invite_code)
    organization, user = _register(
        session,
        organization_name=organization_name,
        organization_slug=organization_slug,
        email=email,
        password_hash=password_hash,
        full_name=full_name,
    )
    if invite is not None:
        invite.organization_id = organization.id
        session.flush()
    return organization, user


def create_invite(session: Session, *, valid_days: int) -> tuple[RegistrationInvite, str]:
    """A single-use registration invite; the plain code is returned once and never stored."""
    plain = "inv_" + secrets.token_urlsafe(24)
    invite = RegistrationInvite(
        code_hash=hash_api_key(plain), expires_at=utc_now() + timedelta(days=valid_days)
    )
    session.add(invite)
    session.flush()
    return invite, plain


def _spend_invite(session: Session, code: str) -> RegistrationInvite:
    # One conditional UPDATE: two registrations racing with one code cannot both spend it.
    now = utc_now()
    spent = session.execute(
        update(RegistrationInvite)
        .where(
            RegistrationInvite.code_hash == hash_api_key(code),
            RegistrationInvite.used_at.is_(None),
            RegistrationInvite.expires_at > now,
        )
        .values(used_at=now)
        .returning(RegistrationInvite.id)
    ).scalar_one_or_none()
    if spent is None:
        raise InviteInvalid("invite_code", "is unknown, expired or already used")
    invite = session.get(RegistrationInvite, spent)
    assert invite is not None
    return invite


def _new_user(
    session: Session,
    organization_id: int,
    email: str,
    password_hash: str,
    role: Role,
    full_name: str | None,
) -> User:
    user = User(
        organization_id=organization_id,
        email=_normalise_email(email),
        password_hash=password_hash,
        role=role,
        full_name=full_name,
        is_active=True,
    )
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise EmailTaken("email: already registered") from None
    return user


def authenticate(session: Session, *, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == _normalise_email(email)))
    if not verify_password(password, user.password_hash if user else None) or user is None:
        raise InvalidCredentials("incorrect email or password")
    if not user.is_active:
        raise UserDeactivated("user is deactivated")
    return user


def user_with_policy_stamp(session: Session, *, user_id: int) -> tuple[User, int] | None:
    """The user and its organization's `policy_stamp`, in one statement (None if unknown)."""
    row = session.execute(
        select(User, Organization.policy_stamp)
        .join(Organization, Organization.id == User.organization_id)
        .where(User.id == user_id)
    ).one_or_none()
    return (row[0], int(row[1])) if row is not None else None


def issue_token(user: User) -> tuple[str, int]:
    return create_access_token(
        user_id=user.id,
        organization_id=user.organization_id,
        role=user.role,
        version=user.token_version,
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
    """A user of the organization (422 on a guessable password, 409 on a taken email).

    The admin's authentication has already read in this unit of work; that transaction ends
    before the hashing (`_new_password_hash`), so SQLite's write lock is not held through it.
    """
    password_hash = _new_password_hash(session, password, user_inputs=[email, full_name])
    if email_taken(session, email):
        raise EmailTaken("email: already registered")
    return _new_user(session, organization_id, email, password_hash, role, full_name)


def list_users(session: Session, *, organization_id: int) -> list[User]:
    stmt = select(User).where(User.organization_id == organization_id).order_by(User.id)
    return list(session.scalars(stmt))


def get_user(session: Session, *, organization_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != organization_id:
        raise UserNotFound("user not found")
    return user


def deactivate_user(
    session: Session, *, organization_id: int, user_id: int, acting_user_id: int | None
) -> User:
    user = get_user(session, organization_id=organization_id, user_id=user_id)
    if user.id == acting_user_id:
        raise CannotDeactivateSelf("user_id: an admin cannot deactivate themselves")
    user.is_active = False
    end_sessions(user)
    session.flush()
    return user


def end_sessions(user: User) -> None:
    """Every access token and session cookie issued to the user so far stops working."""
    user.token_version += 1


def logout(session: Session, *, user_id: int) -> None:
    """End the user's sessions at once (all of them: the token version is per user)."""
    user = session.get(User, user_id)
    if user is not None:
        end_sessions(user)
        session.flush()


def change_password(
    session: Session, *, user_id: int, current_password: str, new_password: str
) -> User:
    """Set a new password (422 `current_password` when wrong, 422 `new_password` when weak).

    Ends every other session; the caller issues the user a fresh token.
    """
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise UserDeactivated("user is deactivated or unknown")
    # Verifying and hashing are argon2: the reads so far must not keep SQLite's write lock.
    end_idle_transaction(session)
    if not verify_password(current_password, user.password_hash):
        raise WrongCurrentPassword
    password_hash = _new_password_hash(
        session, new_password, user_inputs=[user.email, user.full_name], field="new_password"
    )
    # Conditional on the hash just verified: a change committed meanwhile (the same password
    # changed in another tab) is not silently overwritten.
    changed = session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.password_hash == user.password_hash,
            User.is_active.is_(True),
        )
        .values(password_hash=password_hash, token_version=User.token_version + 1)
        .returning(User.id)
    ).scalar_one_or_none()
    if changed is None:
        raise WrongCurrentPassword
    session.refresh(user)
    return user


def request_password_reset(session: Session, *, email: str) -> tuple[User, str] | None:
    """A reset token for an active user's address (None for any other address, silently).

    The plain token goes only into the e-mail; its SHA-256 is stored, valid for
    PASSWORD_RESET_TTL_MINUTES and usable once.
    """
    user = session.scalar(select(User).where(User.email == _normalise_email(email)))
    if user is None or not user.is_active:
        return None
    plain = secrets.token_urlsafe(32)
    ttl = timedelta(minutes=get_settings().password_reset_ttl_minutes)
    session.add(
        PasswordReset(user_id=user.id, token_hash=hash_api_key(plain), expires_at=utc_now() + ttl)
    )
    session.flush()
    return user, plain


def reset_password(session: Session, *, token: str, new_password: str) -> User:
    """Spend a reset token and set the password; every session of the user ends.

    422 on `token` when it is unknown, expired or used; 422 on `new_password` when weak (the
    token is then kept, so the person can try a better password with the same link).
    """
    now = utc_now()
    reset = session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == hash_api_key(token))
    )
    user = session.get(User, reset.user_id) if reset is not None else None
    if reset is None or user is None or reset.used_at is not None or reset.expires_at <= now:
        raise ResetLinkInvalid
    if not user.is_active:
        raise ResetLinkInvalid
    # Hashed before the token is spent: spending it is this unit of work's first write.
    password_hash = _new_password_hash(
        session, new_password, user_inputs=[user.email, user.full_name], field="new_password"
    )
    # One conditional UPDATE spends the token: two submissions racing cannot both use it, and
    # every other outstanding link of the user dies with it.
    spent = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .returning(PasswordReset.id)
    ).scalar_one_or_none()
    if spent is None:
        raise ResetLinkInvalid
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    user.password_hash = password_hash
    end_sessions(user)
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
        raise ApiKeyNotFound("api key not found")
    if api_key.revoked_at is None:
        api_key.revoked_at = utc_now()
        session.flush()
    return api_key


# `last_used_at` is for people ("used 3 minutes ago"): a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyHolder:
    """An API key with what a request needs of its organization, read with it."""

    api_key: ApiKey
    policy_stamp: int  # `Organization.policy_stamp`: tells whether a cached policy is current


# Built once: every request with an API key runs it.
_KEY_WITH_STAMP = (
    select(ApiKey, Organization.policy_stamp)
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


def resolve_api_key(session: Session, plain: str) -> KeyHolder:
    """The key (unrevoked) and its organization's policy stamp, in one statement (401 else)."""
    row = session.execute(_KEY_WITH_STAMP, {"key_hash": hash_api_key(plain)}).one_or_none()
    if row is None or row[0].revoked_at is not None:
        raise InvalidApiKey("invalid or revoked API key")
    api_key, stamp = row
    _mark_used(session, api_key)
    return KeyHolder(api_key=api_key, policy_stamp=int(stamp))


def _mark_used(session: Session, api_key: ApiKey) -> None:
    """Write `last_used_at` at most once a minute per key.

    Race: every request with one key would update the key's row, so concurrent requests queued
    on its row lock, each until the one ahead committed. The write is a conditional UPDATE of a
    row locked with SKIP LOCKED: while one request holds the row (it is writing the minute's
    time), the others skip the write instead of waiting, and within the minute none of them
    matches. The written row stays locked until the request commits; only a revocation of the
    key waits for it.
    """
    now = utc_now()
    if api_key.last_used_at is not None and api_key.last_used_at >= now - LAST_USED_PRECISION:
        return
    stale = (
        select(ApiKey.id)
        .where(
            ApiKey.id == api_key.id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_PRECISION),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    written = session.scalar(
        update(ApiKey)
        .where(ApiKey.id == stale)
        .values(last_used_at=now)
        .returning(ApiKey.id)
        .execution_options(synchronize_session=False)
    )
    if written is not None:
        set_committed_value(api_key, "last_used_at", now)
