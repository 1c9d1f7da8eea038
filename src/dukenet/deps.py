"""FastAPI dependencies: state, database session, current user and role guards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import User, UserRole
from dukenet.errors import Unauthorized
from dukenet.kit.state import AppState

bearer = HTTPBearer(auto_error=False)


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


async def current_user(
    state: State,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """Return the active user of the bearer access token (401 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    user_id = state.tokens.verify(credentials.credentials)
    user = await accounts_service.get_active(session, user_id)
    # End the read transaction: on SQLite every transaction holds the write lock (BEGIN
    # IMMEDIATE), and an endpoint that works in other sessions (training) must not wait on it.
    await session.commit()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(*roles: UserRole) -> object:
    """Return a dependency that admits only users with one of ``roles`` (403 otherwise)."""

    async def guard(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"requires role {' or '.join(r.value for r in roles)}")
        return user

    return Depends(guard)


AdminUser = Annotated[User, require_role(UserRole.ADMIN)]
OperatorUser = Annotated[User, require_role(UserRole.AGENT, UserRole.ADMIN)]
