"""ORM models of the accounts domain: users, refresh tokens and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum, utcnow


class UserRole(StrEnum):
    """What a user may do: buy tasks, operate agents, or administer the marketplace."""

    BUYER = "buyer"
    AGENT = "agent"
    ADMIN = "admin"


class User(IdMixin, TimestampMixin, Base):
    """A person or organisation with a login; agents' operators are users with role ``agent``.

    ``token_version`` is copied into every access token; bumping it (logout everywhere, password
    change, deactivation) invalidates every access token issued before.
    """

    __tablename__ = "user_account"

    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[UserRole] = mapped_column(str_enum(UserRole, "user_role"))
    is_active: Mapped[bool] = mapped_column(default=True)
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # set by an admin's password reset: every endpoint but the password change refuses (403)
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class RefreshToken(IdMixin, Base):
    """One opaque refresh token, stored as the SHA-256 hex digest of its value.

    The tokens issued by one login and its successive rotations share a ``family_id`` (one
    session). A token is used once: ``rotated_at`` is set when it is exchanged; presenting it
    again revokes its whole family (``revoked_at`` on every member).
    """

    __tablename__ = "refresh_token"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiKey(IdMixin, Base):
    """A long-lived key (``dk_...``) with which an operator's runner acts as its owner.

    Only the SHA-256 hex digest of the key is stored, with its first characters (``prefix``) so
    that the owner can tell keys apart.
    """

    __tablename__ = "api_key"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
