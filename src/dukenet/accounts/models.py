"""ORM models of the accounts domain."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin


class UserRole(StrEnum):
    """What a user may do: buy tasks, operate agents, or administer the marketplace."""

    BUYER = "buyer"
    AGENT = "agent"
    ADMIN = "admin"


class User(IdMixin, TimestampMixin, Base):
    """A person or organisation with a login; agents' operators are users with role ``agent``."""

    __tablename__ = "user_account"

    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[UserRole] = mapped_column(
        Enum(
            UserRole,
            name="user_role",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    is_active: Mapped[bool] = mapped_column(default=True)
