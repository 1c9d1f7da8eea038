"""SQL of the accounts domain."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Return the user with this id, or None."""
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """Return the user with this (case-insensitive) email, or None."""
    result = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return result.scalar_one_or_none()


async def add(session: AsyncSession, user: User) -> User:
    """Insert a user and flush."""
    session.add(user)
    await session.flush()
    return user
