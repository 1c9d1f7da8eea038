"""Sessions: opaque refresh tokens, rotated on every use, with reuse (theft) detection.

A login starts a session: a family of refresh tokens. Each exchange (``rotate``) marks the
presented token used and issues its successor in the same family; presenting a used token again
means two parties hold the family's tokens, so the whole family is revoked (the pattern of
OAuth 2.0 Security BCP, RFC 9700 §4.14.2). Access tokens carry the family id (``sid``) and stop
working as soon as their family is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import repository
from dukenet.accounts.models import RefreshToken, User
from dukenet.accounts.service import TokenCodec
from dukenet.errors import Unauthorized
from dukenet.kit.orm import utcnow

REFRESH_TOKEN_BYTES = 32


class RefreshTokenReused(Unauthorized):
    """A refresh token was presented after it had been used: its family is now revoked.

    The revocation is flushed before this is raised; the caller must commit it.
    """


@dataclass(frozen=True)
class TokenPair:
    """An access token and a refresh token of one session, with lifetimes in seconds."""

    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: uuid.UUID


def hash_secret(value: str) -> str:
    """Return the SHA-256 hex digest under which a token or key is stored."""
    return hashlib.sha256(value.encode()).hexdigest()


async def issue_pair(
    session: AsyncSession,
    codec: TokenCodec,
    user: User,
    *,
    refresh_ttl_s: int,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    """Store a new refresh token in ``family_id`` (a new family if None) and return it with an
    access token bound to that family."""
    family = family_id or uuid.uuid4()
    raw = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    await repository.add_refresh_token(
        session,
        RefreshToken(
            user_id=user.id,
            family_id=family,
            token_hash=hash_secret(raw),
            expires_at=utcnow() + timedelta(seconds=refresh_ttl_s),
        ),
    )
    return TokenPair(
        access_token=codec.issue(user, session_id=family),
        access_expires_in=codec.ttl_s,
        refresh_token=raw,
        refresh_expires_in=refresh_ttl_s,
        session_id=family,
    )


async def start_session(
    session: AsyncSession, codec: TokenCodec, user: User, *, refresh_ttl_s: int
) -> TokenPair:
    """Start a new session for ``user`` (after a login), dropping their expired tokens."""
    await repository.delete_expired_tokens(session, user.id, utcnow())
    return await issue_pair(session, codec, user, refresh_ttl_s=refresh_ttl_s)


async def rotate(
    session: AsyncSession, codec: TokenCodec, refresh_token: str, *, refresh_ttl_s: int
) -> TokenPair:
    """Exchange a refresh token for a new pair in the same session; the old one is used up.

    Raises:
        RefreshTokenReused: the token was already used; its whole family is revoked.
        Unauthorized: unknown, revoked or expired token, or the user is deactivated.
    """
    now = utcnow()
    token = await repository.get_refresh_token(session, hash_secret(refresh_token))
    if token is None:
        raise Unauthorized("invalid refresh token")
    if token.revoked_at is not None:
        raise Unauthorized("refresh token revoked")
    if token.rotated_at is None and token.expires_at <= now:
        raise Unauthorized("refresh token expired")
    user = await repository.get(session, token.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("user not found or deactivated")
    # A conditional UPDATE: of two concurrent exchanges of one token, only one succeeds.
    if token.rotated_at is not None or not await repository.mark_rotated(session, token.id, now):
        await repository.revoke_family(session, token.family_id, now)
        await session.flush()
        raise RefreshTokenReused("refresh token already used; the session has been revoked")
    return await issue_pair(
        session, codec, user, refresh_ttl_s=refresh_ttl_s, family_id=token.family_id
    )


async def revoke(session: AsyncSession, refresh_token: str) -> None:
    """End the session of a refresh token (revoke its family); unknown tokens are ignored."""
    token = await repository.get_refresh_token(session, hash_secret(refresh_token))
    if token is not None:
        await repository.revoke_family(session, token.family_id, utcnow())
