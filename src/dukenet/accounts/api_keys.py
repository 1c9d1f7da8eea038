"""API keys: long-lived ``dk_...`` credentials with which operators' runners act as their owner.

A key is shown once, at creation; only its SHA-256 digest and a short visible prefix are stored.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import repository
from dukenet.accounts.models import ApiKey, User, UserRole
from dukenet.accounts.tokens import hash_secret
from dukenet.errors import Forbidden, NotFound, Unauthorized
from dukenet.kit.orm import utcnow

API_KEY_PREFIX = "dk_"
API_KEY_BYTES = 32
VISIBLE_CHARS = 8  # of the random part, after ``dk_``
KEY_ROLES = frozenset({UserRole.AGENT, UserRole.ADMIN})
BUYER_KEY_ROLES = frozenset({UserRole.BUYER, UserRole.ADMIN})


def is_api_key(value: str) -> bool:
    """Return True when ``value`` looks like an API key rather than a JWT."""
    return value.startswith(API_KEY_PREFIX)


async def create(
    session: AsyncSession, *, owner: User, name: str, roles: frozenset[UserRole] = KEY_ROLES
) -> tuple[ApiKey, str]:
    """Create an API key for ``owner``; return the stored key and its secret value.

    Raises:
        Forbidden: ``owner``'s role is not in ``roles`` (by default keys are for agent
            operators' runners; the gateway's buyer keys pass ``BUYER_KEY_ROLES``).
    """
    if owner.role not in roles:
        raise Forbidden(
            f"only {' and '.join(sorted(r.value for r in roles))} users can create these API keys"
            if roles != KEY_ROLES
            else "only agent operators and admins can create API keys"
        )
    raw = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_BYTES)
    key = ApiKey(
        user_id=owner.id,
        name=name,
        prefix=raw[: len(API_KEY_PREFIX) + VISIBLE_CHARS],
        key_hash=hash_secret(raw),
    )
    return await repository.add_api_key(session, key), raw


async def list_keys(session: AsyncSession, *, owner: User) -> Sequence[ApiKey]:
    """Return ``owner``'s API keys, newest first (revoked ones included)."""
    return await repository.list_api_keys(session, owner.id)


async def revoke(session: AsyncSession, *, owner: User, key_id: uuid.UUID) -> ApiKey:
    """Revoke one of ``owner``'s API keys; revoking a revoked key changes nothing.

    Raises:
        NotFound: no such key, or it is someone else's.
    """
    key = await repository.get_api_key(session, key_id)
    if key is None or key.user_id != owner.id:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


async def authenticate(session: AsyncSession, raw: str, *, touch_interval_s: float) -> User:
    """Return the active owner of a live API key and note its use (see ``authenticate_key``).

    Raises:
        Unauthorized: unknown or revoked key, or its owner is deactivated.
    """
    return (await authenticate_key(session, raw, touch_interval_s=touch_interval_s))[1]


async def authenticate_key(
    session: AsyncSession, raw: str, *, touch_interval_s: float
) -> tuple[ApiKey, User]:
    """Return a live API key and its active owner, and note the key's use.

    ``last_used_at`` is written at most once per ``touch_interval_s`` seconds per key, so that a
    busy runner does not turn every request into a write.

    Raises:
        Unauthorized: unknown or revoked key, or its owner is deactivated.
    """
    found = await repository.get_api_key_with_owner(session, hash_secret(raw))
    if found is None:
        raise Unauthorized("invalid API key")
    key, user = found
    if key.revoked_at is not None:
        raise Unauthorized("API key revoked")
    if not user.is_active:
        raise Unauthorized("user not found or deactivated")
    now = utcnow()
    stale_before = now - timedelta(seconds=touch_interval_s)
    if key.last_used_at is None or key.last_used_at < stale_before:
        await repository.touch_api_key(session, key.id, now, stale_before)
    return key, user
