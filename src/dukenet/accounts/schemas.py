"""API schemas of the accounts domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import EmailStr, Field

from dukenet.accounts.models import UserRole
from dukenet.kit.schema import Schema


class UserCreate(Schema):
    """Registration form; admins are created with ``dukenet users create-admin``, not here."""

    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    role: Literal["buyer", "agent"] = "buyer"
    display_name: str = Field(default="", max_length=120)


class LoginRequest(Schema):
    """Email and password."""

    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(Schema):
    """A refresh token to exchange (``/auth/refresh``) or to end (``/auth/logout``)."""

    refresh_token: str = Field(min_length=1, max_length=256)


class TokenRead(Schema):
    """A bearer access token (JWT) and a single-use refresh token, with lifetimes in seconds."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class UserRead(Schema):
    """A user as shown to themselves and to admins."""

    id: uuid.UUID
    email: str
    display_name: str
    role: UserRole
    is_active: bool
    created_at: datetime
    must_change_password: bool = False


class ProfileRead(UserRead):
    """The caller's own profile, with their wallet balance in satoshis."""

    balance_sat: int


class ProfileUpdate(Schema):
    """Fields a user may change on their own profile; omitted fields are left as they are."""

    display_name: str | None = Field(default=None, max_length=120)


class PasswordResetRead(Schema):
    """An admin's password reset: the temporary password, shown only in this response."""

    user_id: uuid.UUID
    temporary_password: str


class PasswordChange(Schema):
    """The current password and the new one."""

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class ApiKeyCreate(Schema):
    """A name for a new API key (e.g. the machine its runner runs on)."""

    name: str = Field(min_length=1, max_length=120)


class ApiKeyRead(Schema):
    """An API key without its secret: ``prefix`` is its first characters."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """A new API key with its secret ``key``, shown this once only."""

    key: str
