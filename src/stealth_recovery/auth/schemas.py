from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from pydantic.config import JsonDict

from stealth_recovery.auth.models import Role
from stealth_recovery.core.api import DisplayName, Text

_ORG: JsonDict = {
    "id": 1,
    "name": "Acme Subscriptions",
    "slug": "acme",
    "created_at": "2026-11-28T09:00:00Z",
}
_USER: JsonDict = {
    "id": 1,
    "email": "owner@acme.example.com",
    "full_name": "Ada Owner",
    "role": "admin",
    "is_active": True,
    "organization_id": 1,
    "created_at": "2026-11-28T09:00:00Z",
}
_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
_API_KEY: JsonDict = {
    "id": 1,
    "name": "billing-server",
    "masked_key": "sk_AbC1…x9Yz",
    "created_at": "2026-11-28T09:00:00Z",
    "last_used_at": None,
    "revoked_at": None,
}

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class RegisterRequest(BaseModel):
    organization_name: DisplayName = Field(
        min_length=1,
        max_length=200,
        description="shown to customers as the sender of their reminders",
        examples=["Acme Subscriptions"],
    )
    organization_slug: Text | None = Field(
        default=None,
        pattern=SLUG_PATTERN,
        description="lowercase letters, digits and dashes; derived from the name when omitted",
        examples=["acme"],
    )
    email: EmailStr = Field(examples=["owner@acme.example.com"])
    password: Text = Field(min_length=10, max_length=256, examples=["correct horse battery"])
    full_name: DisplayName | None = Field(default=None, max_length=200, examples=["Ada Owner"])
    invite_code: Text | None = Field(
        default=None,
        max_length=100,
        description="required when the server's REGISTRATION is `invite`; spent by this call",
        examples=["inv_3kV9yq0sXw1bX7aP2QmZr8uD5tF4hL6c"],
    )


class LoginRequest(BaseModel):
    email: EmailStr = Field(examples=["owner@acme.example.com"])
    password: Text = Field(min_length=1, max_length=256, examples=["correct horse battery"])


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"access_token": _TOKEN, "token_type": "bearer", "expires_in": 3600}]
        }
    )

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_ORG]})

    id: int
    name: str
    slug: str
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_USER]})

    id: int
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    organization_id: int
    created_at: datetime


class RegisterResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organization": _ORG,
                    "user": _USER,
                    "access_token": _TOKEN,
                    "token_type": "bearer",
                    "expires_in": 3600,
                }
            ]
        }
    )

    organization: OrganizationOut
    user: UserOut
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user": _USER, "organization": _ORG, "role": "admin", "auth": "jwt"}]
        }
    )

    user: UserOut | None
    organization: OrganizationOut
    role: str
    auth: str = Field(description="`jwt` or `api_key`")


class UserCreate(BaseModel):
    email: EmailStr = Field(examples=["analyst@acme.example.com"])
    password: Text = Field(min_length=10, max_length=256, examples=["another long passphrase"])
    role: Role = Field(examples=["analyst"])
    full_name: DisplayName | None = Field(default=None, max_length=200, examples=["Alan Analyst"])


class ApiKeyCreate(BaseModel):
    name: DisplayName = Field(min_length=1, max_length=128, examples=["billing-server"])


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_API_KEY]})

    id: int
    name: str
    masked_key: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_API_KEY, "key": "sk_AbC1dEf2gHi3jKl4mNo5pQr6sTu7vWx8yZ9x9Yz"}]
        }
    )

    key: str = Field(description="the full key; shown only in this response")


class PasswordChange(BaseModel):
    current_password: Text = Field(min_length=1, max_length=256, examples=["correct horse battery"])
    new_password: Text = Field(
        min_length=10,
        max_length=256,
        description="at least 10 characters and not easy to guess (zxcvbn score 3 or more)",
        examples=["a much longer and odder passphrase"],
    )


class PasswordResetRequest(BaseModel):
    email: EmailStr = Field(examples=["owner@acme.example.com"])


class PasswordResetConfirm(BaseModel):
    token: Text = Field(min_length=1, max_length=200, description="from the link in the e-mail")
    new_password: Text = Field(
        min_length=10,
        max_length=256,
        description="at least 10 characters and not easy to guess (zxcvbn score 3 or more)",
        examples=["a much longer and odder passphrase"],
    )


class Accepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "if the address has an account, a reset link is on its way"}]
        }
    )

    detail: str
