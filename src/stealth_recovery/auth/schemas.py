from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from stealth_recovery.auth.models import Role

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class RegisterRequest(BaseModel):
    organization_name: str = Field(min_length=1, max_length=200, examples=["Acme Subscriptions"])
    organization_slug: str | None = Field(
        default=None,
        pattern=SLUG_PATTERN,
        description="lowercase letters, digits and dashes; derived from the name when omitted",
        examples=["acme"],
    )
    email: EmailStr = Field(examples=["owner@acme.example.com"])
    password: str = Field(min_length=10, max_length=256, examples=["correct horse battery"])
    full_name: str | None = Field(default=None, max_length=200)


class LoginRequest(BaseModel):
    email: EmailStr = Field(examples=["owner@acme.example.com"])
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    organization_id: int
    created_at: datetime


class RegisterResponse(BaseModel):
    organization: OrganizationOut
    user: UserOut
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeResponse(BaseModel):
    user: UserOut | None
    organization: OrganizationOut
    role: str
    auth: str = Field(description="`jwt` or `api_key`")


class UserCreate(BaseModel):
    email: EmailStr
    password: str = Field(min_length=10, max_length=256)
    role: Role
    full_name: str | None = Field(default=None, max_length=200)


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, examples=["billing-server"])


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    masked_key: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the full key; shown only in this response")
