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


class TokenRead(Schema):
    """A bearer access token (JWT) and its lifetime in seconds."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserRead(Schema):
    """A user as shown to themselves and to admins."""

    id: uuid.UUID
    email: str
    display_name: str
    role: UserRole
    is_active: bool
    created_at: datetime


class ProfileRead(UserRead):
    """The caller's own profile, with their wallet balance in satoshis."""

    balance_sat: int
