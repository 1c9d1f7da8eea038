"""SQL of the accounts domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dukenet.accounts.models import ApiKey, RefreshToken, User, UserRole


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Return the user with this id, or None."""
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """Return the user with this (case-insensitive) email, or None."""
    result = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return result.scalar_one_or_none()


async def get_with_session_state(
    session: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID
) -> tuple[User, bool] | None:
    """Return the user and whether their refresh-token family ``family_id`` is still live
    (one query), or None when there is no such user."""
    live = (
        select(RefreshToken.id)
        .where(
            RefreshToken.family_id == family_id,
            RefreshToken.user_id == user_id,
            RefreshToken.revoked_at.is_(None),
        )
        .exists()
    )
    row = (await session.execute(select(User, live).where(User.id == user_id))).one_or_none()
    if row is None:
        return None
    return row[0], bool(row[1])


async def add(session: AsyncSession, user: User) -> User:
    """Insert a user and flush."""
    session.add(user)
    await session.flush()
    return user


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(
    session: AsyncSession,
    *,
    role: UserRole | None,
    is_active: bool | None,
    limit: int,
    offset: int,
    search: str | None = None,
) -> tuple[Sequence[User], int]:
    """Return one page of users, newest first, and the number matching the filters."""
    conditions: list[ColumnElement[bool]] = []
    if role is not None:
        conditions.append(User.role == role)
    if is_active is not None:
        conditions.append(User.is_active == is_active)
    if search:
        pattern = "%" + _escape_like(search.lower()) + "%"
        conditions.append(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    total = await session.scalar(select(func.count()).select_from(User).where(*conditions))
    rows = await session.scalars(
        select(User)
        .where(*conditions)
        .order_by(User.created_at.desc(), User.id)
        .limit(limit)
        .offset(offset)
    )
    return rows.all(), int(total or 0)


# refresh tokens


async def add_refresh_token(session: AsyncSession, token: RefreshToken) -> RefreshToken:
    """Insert a refresh token and flush."""
    session.add(token)
    await session.flush()
    return token


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """Return the refresh token with this hash, or None."""
    result = await session.execute(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    )
    return result.scalar_one_or_none()


async def mark_rotated(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Set ``rotated_at`` on a live, unused token; return False if it was used or revoked
    meanwhile (a conditional UPDATE, so two concurrent exchanges cannot both succeed)."""
    result = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == token_id,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    """Revoke every not yet revoked token of one family."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Revoke every not yet revoked refresh token of a user."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def delete_expired_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Delete a user's refresh tokens that expired (they can no longer be used anyway)."""
    await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.expires_at < now)
        .execution_options(synchronize_session=False)
    )


# API keys


async def add_api_key(session: AsyncSession, key: ApiKey) -> ApiKey:
    """Insert an API key and flush."""
    session.add(key)
    await session.flush()
    return key


async def get_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    """Return the API key with this id, or None."""
    return await session.get(ApiKey, key_id)


async def get_api_key_with_owner(
    session: AsyncSession, key_hash: str
) -> tuple[ApiKey, User] | None:
    """Return the API key with this hash and its owner (one query), or None."""
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).one_or_none()
    if row is None:
        return None
    return row[0], row[1]


async def list_api_keys(session: AsyncSession, user_id: uuid.UUID) -> Sequence[ApiKey]:
    """Return a user's API keys, newest first, revoked ones included."""
    rows = await session.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return rows.all()


async def touch_api_key(
    session: AsyncSession, key_id: uuid.UUID, now: datetime, stale_before: datetime
) -> None:
    """Set ``last_used_at`` to ``now`` unless it is already later than ``stale_before``."""
    await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
