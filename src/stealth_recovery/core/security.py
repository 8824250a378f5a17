"""Passwords (argon2), access tokens (JWT), API keys and secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pwdlib import PasswordHash

from stealth_recovery.core.errors import Unauthorized
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now

JWT_ALGORITHM = "HS256"


class TokenExpired(Unauthorized):
    type = "token_expired"


class InvalidAccessToken(Unauthorized):
    type = "invalid_token"


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
    version: int  # the user's token_version when the token was issued


def create_access_token(
    *, user_id: int, organization_id: int, role: str, version: int
) -> tuple[str, int]:
    """An HS256 JWT (`sub`, `org_id`, `role`, `ver`, `iat`, `exp`) and its lifetime in seconds."""
    settings = get_settings()
    ttl = timedelta(minutes=settings.jwt_ttl_minutes)
    now = utc_now()
    payload = {
        "sub": str(user_id),
        "org_id": organization_id,
        "role": role,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    token = jwt.encode(payload, settings.signing_secret(), algorithm=JWT_ALGORITHM)
    return token, int(ttl.total_seconds())


def decode_access_token(token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            get_settings().signing_secret(),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "org_id", "role", "ver"]},
        )
        return TokenClaims(
            user_id=int(payload["sub"]),
            organization_id=int(payload["org_id"]),
            role=str(payload["role"]),
            version=int(payload["ver"]),
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("token expired") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidAccessToken("invalid token") from None


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough and allows lookup by hash.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_token() -> str:
    """A pay-link token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _fernet_for(secret: str) -> Fernet:
    digest = hashlib.sha256(("encryption:" + secret).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _fernets() -> MultiFernet:
    """The current key first (it encrypts); SECRET_KEY_PREVIOUS after it (decrypts only)."""
    settings = get_settings()
    keys = [_fernet_for(settings.signing_secret())]
    previous = settings.previous_signing_secret()
    if previous is not None:
        keys.append(_fernet_for(previous))
    return MultiFernet(keys)


def encrypt_secret(value: str) -> str:
    """Encrypt a secret for storage (Fernet, key derived from SECRET_KEY)."""
    return _fernets().encrypt(value.encode()).decode()


def decrypt_secret(value: str) -> str:
    """Decrypt a stored secret with SECRET_KEY or, during a rotation, SECRET_KEY_PREVIOUS.

    Raises RuntimeError when neither key decrypts it.
    """
    try:
        return _fernets().decrypt(value.encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("stored secret cannot be decrypted with the current SECRET_KEY") from exc


def reencrypt_secret(value: str) -> str:
    """The same secret encrypted with the current SECRET_KEY (rotation); RuntimeError as above."""
    try:
        return _fernets().rotate(value.encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("stored secret cannot be decrypted with the current SECRET_KEY") from exc
