"""Registration, authentication, access tokens, profiles and user administration."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import repository
from dukenet.accounts.models import User, UserRole
from dukenet.errors import BadRequest, Conflict, NotFound, Unauthorized
from dukenet.kit.orm import utcnow


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says: whose it is, the user's ``token_version`` when it
    was issued, and the refresh-token family (session) it belongs to, if any."""

    user_id: uuid.UUID
    version: int
    session_id: uuid.UUID | None


class TokenCodec:
    """Issues and verifies HS256 access JWTs (``sub`` = user id, ``role``, ``ver`` = the user's
    token version, ``sid`` = session (refresh-token family) id, ``exp``, a unique ``jti``)."""

    def __init__(self, secret: str, *, algorithm: str = "HS256", ttl_s: int = 3600) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self.ttl_s = ttl_s

    def issue(self, user: User, *, session_id: uuid.UUID | None = None) -> str:
        """Return a signed access token for ``user`` valid for ``ttl_s`` seconds."""
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "role": user.role.value,
            "ver": user.token_version or 0,
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "typ": "access",
            "jti": uuid.uuid4().hex,
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def decode(self, token: str) -> AccessClaims:
        """Return the claims of a valid token (signature and expiry checked, not revocation).

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
            user_id = uuid.UUID(str(claims["sub"]))
            session_id = uuid.UUID(str(claims["sid"])) if "sid" in claims else None
            version = int(claims.get("ver", 0))
        except (TypeError, ValueError) as exc:
            raise Unauthorized("invalid access token") from exc
        return AccessClaims(user_id=user_id, version=version, session_id=session_id)

    def verify(self, token: str) -> uuid.UUID:
        """Return the user id of a valid token (see ``decode``).

        Raises:
            Unauthorized: the token is malformed, forged or expired.
        """
        return self.decode(token).user_id


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
        token_version=0,
    )
    return await repository.add(session, user)


async def authenticate(
    session: AsyncSession, hasher: PasswordHash, *, email: str, password: str
) -> User:
    """Return the active user whose password matches.

    Raises:
        Unauthorized: unknown email or wrong password (one message for both, OWASP ASVS 2.x:
            it does not reveal which emails are registered); a deactivated account says so,
            but only once its password is right.
    """
    user = await repository.get_by_email(session, email)
    if user is None:
        hasher.hash(password)  # same work either way, so timing does not reveal registered emails
        raise Unauthorized("incorrect email or password")
    if not hasher.verify(password, user.password_hash):
        raise Unauthorized("incorrect email or password")
    if not user.is_active:
        raise Unauthorized("this account is deactivated; contact an administrator")
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


async def authenticate_access(session: AsyncSession, claims: AccessClaims) -> User:
    """Return the active user of a decoded access token that has not been revoked.

    A token is revoked when the user's ``token_version`` moved on since it was issued, or when
    its session (refresh-token family) was logged out.

    Raises:
        Unauthorized: no such user, deactivated, or the token was revoked.
    """
    if claims.session_id is None:
        user = await repository.get(session, claims.user_id)
        live = True
    else:
        found = await repository.get_with_session_state(session, claims.user_id, claims.session_id)
        user, live = found if found is not None else (None, False)
    if user is None or not user.is_active:
        raise Unauthorized("user not found or deactivated")
    if user.token_version != claims.version or not live:
        raise Unauthorized("access token revoked")
    return user


async def end_all_sessions(session: AsyncSession, user: User) -> None:
    """Revoke every refresh token of ``user`` and invalidate all their access tokens."""
    await repository.revoke_user_tokens(session, user.id, utcnow())
    user.token_version += 1
    await session.flush()


async def update_profile(session: AsyncSession, user: User, *, display_name: str | None) -> User:
    """Change the fields of ``user``'s profile that are given (not None)."""
    if display_name is not None:
        user.display_name = display_name
    await session.flush()
    return user


async def change_password(
    session: AsyncSession,
    hasher: PasswordHash,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> User:
    """Replace ``user``'s password and end all their sessions (the caller starts a new one).

    Raises:
        BadRequest: ``current_password`` is wrong.
    """
    if not hasher.verify(current_password, user.password_hash):
        raise BadRequest("current password is incorrect")
    user.password_hash = hasher.hash(new_password)
    user.must_change_password = False
    await end_all_sessions(session, user)
    return user


async def reset_password(session: AsyncSession, hasher: PasswordHash, *, user_id: uuid.UUID) -> str:
    """Give a user a random temporary password (returned, never stored in clear), end all their
    sessions, and require a new password at their next login (``must_change_password``).

    Raises:
        NotFound: no such user.
    """
    user = await repository.get(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    temporary = secrets.token_urlsafe(12)
    user.password_hash = hasher.hash(temporary)
    user.must_change_password = True
    await end_all_sessions(session, user)
    return temporary


async def list_users(
    session: AsyncSession,
    *,
    role: UserRole | None = None,
    is_active: bool | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[User], int]:
    """Return one page of users (newest first) and the total matching the filters; ``search``
    matches a substring of the email or display name, case-insensitively."""
    return await repository.list_users(
        session, role=role, is_active=is_active, search=search, limit=limit, offset=offset
    )


async def set_active(
    session: AsyncSession, *, admin: User, user_id: uuid.UUID, active: bool
) -> User:
    """Deactivate (ending every session at once) or reactivate a user; idempotent.

    Raises:
        NotFound: no such user.
        Conflict: an admin tried to deactivate themselves.
    """
    user = await repository.get(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if not active and user.id == admin.id:
        raise Conflict("admins cannot deactivate themselves")
    if user.is_active == active:
        return user
    user.is_active = active
    if not active:
        await end_all_sessions(session, user)
    await session.flush()
    return user
