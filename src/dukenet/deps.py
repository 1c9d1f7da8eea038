"""FastAPI dependencies: state, database session, current user and role guards.

Callers authenticate with a bearer access JWT (people, the web UI) or with an API key
(``Authorization: Bearer dk_...`` or ``X-API-Key: dk_...``; operators' runners). Most
endpoints accept both; account management and admin endpoints take an access token only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import api_keys
from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import User, UserRole
from dukenet.errors import Unauthorized
from dukenet.kit.state import AppState

bearer = HTTPBearer(auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_state(request: Request) -> AppState:
    """Return the process's application state."""
    state: AppState = request.app.state.dukenet
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    """Yield a session for one request; endpoints commit, anything uncommitted rolls back."""
    async with state.sessionmaker() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
ApiKeyHeaderValue = Annotated[str | None, Depends(api_key_header)]


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    return credentials.credentials


# What a user whose password an admin reset may still do: read their profile, set a new
# password, end their sessions (paths end with these; everything else is 403).
PASSWORD_CHANGE_PATHS = ("/users/me", "/users/me/password", "/auth/logout-all")


def _check_password_change(request: Request, user: User) -> None:
    if user.must_change_password and not request.url.path.endswith(PASSWORD_CHANGE_PATHS):
        raise HTTPException(403, "password change required: set a new password first")


async def current_user(
    request: Request,
    state: State,
    session: Session,
    credentials: BearerCredentials,
    x_api_key: ApiKeyHeaderValue,
) -> User:
    """Return the active user of the bearer access token, or the owner of the API key (401
    otherwise); revocation and deactivation are checked on every request. A user whose
    password was reset gets 403 outside ``PASSWORD_CHANGE_PATHS``."""
    token = _bearer_token(credentials)
    if token is not None and not api_keys.is_api_key(token):
        user = await accounts_service.authenticate_access(session, state.tokens.decode(token))
    elif token is not None or x_api_key:
        key, user = await api_keys.authenticate_key(
            session,
            token or x_api_key or "",
            touch_interval_s=state.settings.api_key_touch_interval_s,
        )
        request.state.api_key_id = key.id  # spend limits and usage of the paying key
    else:
        raise Unauthorized("missing bearer token")
    # End the read transaction: on SQLite every transaction holds the write lock (BEGIN
    # IMMEDIATE), and an endpoint that works in other sessions (training) must not wait on it.
    await session.commit()
    _check_password_change(request, user)
    return user


async def session_user(
    request: Request,
    state: State,
    session: Session,
    credentials: BearerCredentials,
    x_api_key: ApiKeyHeaderValue,
) -> User:
    """Return the active user of the bearer access token; API keys are refused (401); 403
    outside ``PASSWORD_CHANGE_PATHS`` while a reset password awaits its change."""
    token = _bearer_token(credentials)
    if token is None and x_api_key:
        raise Unauthorized("API keys are not accepted here; use an access token")
    if token is None:
        raise Unauthorized("missing bearer token")
    if api_keys.is_api_key(token):
        raise Unauthorized("API keys are not accepted here; use an access token")
    user = await accounts_service.authenticate_access(session, state.tokens.decode(token))
    await session.commit()
    _check_password_change(request, user)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def current_api_key_id(request: Request, user: CurrentUser) -> uuid.UUID | None:
    """Return the id of the API key the request authenticated with (None for a token)."""
    key_id: uuid.UUID | None = getattr(request.state, "api_key_id", None)
    return key_id


CurrentApiKeyId = Annotated[uuid.UUID | None, Depends(current_api_key_id)]
SessionUser = Annotated[User, Depends(session_user)]


def require_role(*roles: UserRole, allow_api_key: bool = True) -> object:
    """Return a dependency that admits only users with one of ``roles`` (403 otherwise),
    authenticated by access token or, if ``allow_api_key``, by API key."""

    def check(user: User) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"requires role {' or '.join(r.value for r in roles)}")
        return user

    async def guard(user: CurrentUser) -> User:
        return check(user)

    async def session_guard(user: SessionUser) -> User:
        return check(user)

    return Depends(guard if allow_api_key else session_guard)


AdminUser = Annotated[User, require_role(UserRole.ADMIN, allow_api_key=False)]
OperatorUser = Annotated[User, require_role(UserRole.AGENT, UserRole.ADMIN)]
