"""Passwords (argon2), access tokens (JWT), API keys and secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from cryptography.fernet import Fernet, InvalidToken
from pwdlib import PasswordHash

from stealth_recovery.core.errors import Unauthorized
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "sk_"

_password_hash = PasswordHash.recommended()
# Verifying against this keeps an unknown email as slow as a wrong password.
_DUMMY_HASH = _password_hash.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _password_hash.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _password_hash.verify(password, _DUMMY_HASH)
        return False
    return _password_hash.verify(password, password_hash)


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    organization_id: int
    role: str


def create_access_token(*, user_id: int, organization_id: int, role: str) -> tuple[str, int]:
    settings = get_settings()
    ttl = timedelta(minutes=settings.jwt_ttl_minutes)
    now = utc_now()
    payload = {
        "sub": str(user_id),
        "org_id": organization_id,
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    token = jwt.encode(payload, settings.secret_key, algorithm=JWT_ALGORITHM)
    return token, int(ttl.total_seconds())


def decode_access_token(token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "org_id", "role"]},
        )
        return TokenClaims(
            user_id=int(payload["sub"]),
            organization_id=int(payload["org_id"]),
            role=str(payload["role"]),
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Unauthorized("invalid token") from None


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough and allows lookup by hash.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_token() -> str:
    """A pay-link token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _fernet() -> Fernet:
    digest = hashlib.sha256(("encryption:" + get_settings().secret_key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt_secret(value: str) -> str:
    try:
        return _fernet().decrypt(value.encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("stored secret cannot be decrypted with the current SECRET_KEY") from exc
