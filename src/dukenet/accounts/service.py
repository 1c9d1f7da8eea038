"""Registration, authentication and access tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import repository
from dukenet.accounts.models import User, UserRole
from dukenet.errors import Conflict, Unauthorized
from dukenet.kit.orm import utcnow


class TokenCodec:
    """Issues and verifies HS256 access JWTs (``sub`` = user id, ``role``, ``exp``)."""

    def __init__(self, secret: str, *, algorithm: str = "HS256", ttl_s: int = 3600) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self.ttl_s = ttl_s

    def issue(self, user: User) -> str:
        """Return a signed access token for ``user`` valid for ``ttl_s`` seconds."""
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "role": user.role.value,
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> uuid.UUID:
        """Return the user id of a valid token.

        Raises:
            Unauthorized: the token is malformed, forged or expired.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("access token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid access token") from exc
        if claims.get("typ") != "access":
            raise Unauthorized("not an access token")
        try:
            return uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthorized("invalid access token") from exc


def password_hasher() -> PasswordHash:
    """Return the recommended password hasher (Argon2id, pwdlib defaults)."""
    return PasswordHash.recommended()


async def register(
    session: AsyncSession,
    hasher: PasswordHash,
    *,
    email: str,
    password: str,
    role: UserRole,
    display_name: str = "",
) -> User:
    """Create a user with a hashed password.

    Raises:
        Conflict: the email is already registered.
    """
    if await repository.get_by_email(session, email) is not None:
        raise Conflict(f"email {email!r} is already registered")
    user = User(
        email=email.lower(),
        password_hash=hasher.hash(password),
        role=role,
        display_name=display_name,
    )
    return await repository.add(session, user)


async def authenticate(
    session: AsyncSession, hasher: PasswordHash, *, email: str, password: str
) -> User:
    """Return the active user whose password matches.

    Raises:
        Unauthorized: unknown email, wrong password or deactivated user (one message for all).
    """
    user = await repository.get_by_email(session, email)
    if user is None:
        hasher.hash(password)  # same work either way, so timing does not reveal registered emails
        raise Unauthorized("incorrect email or password")
    if not hasher.verify(password, user.password_hash) or not user.is_active:
        raise Unauthorized("incorrect email or password")
    return user


async def get_active(session: AsyncSession, user_id: uuid.UUID) -> User:
    """Return the active user with this id.

    Raises:
        Unauthorized: no such user, or deactivated.
    """
    user = await repository.get(session, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("user not found or deactivated")
    return user
