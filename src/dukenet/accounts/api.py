"""Accounts endpoints: register, log in, sessions, profile, API keys, user administration."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Query, Request, status

from dukenet.accounts import api_keys, service, tokens
from dukenet.accounts.models import User, UserRole
from dukenet.accounts.rate_limit import RateLimited
from dukenet.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    LoginRequest,
    PasswordChange,
    PasswordResetRead,
    ProfileRead,
    ProfileUpdate,
    RefreshRequest,
    TokenRead,
    UserCreate,
    UserRead,
)
from dukenet.deps import AdminUser, CurrentUser, Session, SessionUser, State
from dukenet.kit.openapi import error_responses
from dukenet.kit.schema import Page
from dukenet.kit.state import AppState
from dukenet.ledger import service as ledger_service

router = APIRouter(tags=["accounts"])


def _token_read(pair: tokens.TokenPair) -> TokenRead:
    return TokenRead(
        access_token=pair.access_token,
        expires_in=pair.access_expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )


async def _limit_login(state: AppState, request: Request, email: str | None) -> None:
    """Count a login attempt (``email``) or a registration (None); 429 with ``Retry-After``
    when a limit is exhausted. The client is the peer address (behind a proxy listed in
    ``DUKENET_TRUSTED_PROXIES``, the one it forwards)."""
    ip = request.client.host if request.client is not None else "unknown"
    try:
        if email is None:
            await state.login_limiter.hit_registration(ip=ip)
        else:
            await state.login_limiter.hit(email=email, ip=ip)
    except RateLimited as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            exc.message,
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from exc


async def _profile(session: Session, user: User) -> ProfileRead:
    balance = await ledger_service.balance(session, ledger_service.wallet_name(user.id))
    return ProfileRead(**UserRead.model_validate(user).model_dump(), balance_sat=balance)


# sessions


@router.post("/auth/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(data: UserCreate, request: Request, session: Session, state: State) -> UserRead:
    """Register a buyer or an agent operator (rate limited per client address: 429 with
    ``Retry-After``)."""
    await _limit_login(state, request, None)
    user = await service.register(
        session,
        state.hasher,
        email=str(data.email),
        password=data.password,
        role=UserRole(data.role),
        display_name=data.display_name,
    )
    await session.commit()
    return UserRead.model_validate(user)


@router.post(
    "/auth/login",
    response_model=TokenRead,
    responses={
        **error_responses(401),
        429: {"description": "Too many attempts for this email or from this address"},
    },
)
async def login(data: LoginRequest, request: Request, session: Session, state: State) -> TokenRead:
    """Exchange email and password for an access token and a refresh token (a new session).

    Attempts are rate limited per email and per client address (429 with ``Retry-After``).
    """
    await _limit_login(state, request, str(data.email))
    user = await service.authenticate(
        session, state.hasher, email=str(data.email), password=data.password
    )
    pair = await tokens.start_session(
        session, state.tokens, user, refresh_ttl_s=state.settings.refresh_token_ttl_s
    )
    await session.commit()
    return _token_read(pair)


@router.post("/auth/refresh", response_model=TokenRead, responses=error_responses(401))
async def refresh(data: RefreshRequest, session: Session, state: State) -> TokenRead:
    """Exchange a refresh token for a new pair; the old refresh token is used up.

    Presenting a refresh token a second time revokes its whole session (401).
    """
    try:
        pair = await tokens.rotate(
            session,
            state.tokens,
            data.refresh_token,
            refresh_ttl_s=state.settings.refresh_token_ttl_s,
        )
    except tokens.RefreshTokenReused:
        await session.commit()  # keep the family's revocation
        raise
    await session.commit()
    return _token_read(pair)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(data: RefreshRequest, session: Session) -> None:
    """End the session of a refresh token: it and the session's access tokens stop working."""
    await tokens.revoke(session, data.refresh_token)
    await session.commit()


@router.post("/auth/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(user: SessionUser, session: Session) -> None:
    """End every session of the caller (all refresh and access tokens stop working)."""
    await service.end_all_sessions(session, user)
    await session.commit()


# profile


@router.get("/users/me", response_model=ProfileRead)
async def me(user: CurrentUser, session: Session) -> ProfileRead:
    """Return the caller's profile and wallet balance."""
    return await _profile(session, user)


@router.patch("/users/me", response_model=ProfileRead)
async def update_me(data: ProfileUpdate, user: CurrentUser, session: Session) -> ProfileRead:
    """Change the caller's display name."""
    await service.update_profile(session, user, display_name=data.display_name)
    await session.commit()
    return await _profile(session, user)


@router.post(
    "/users/me/password",
    response_model=TokenRead,
    responses={
        **error_responses(400),
        429: {"description": "Too many attempts for this account or from this address"},
    },
)
async def change_password(
    data: PasswordChange, request: Request, user: SessionUser, session: Session, state: State
) -> TokenRead:
    """Change the caller's password; every other session ends, the caller gets a new one.

    A wrong current password is 400; attempts count against the login rate limits.
    """
    await _limit_login(state, request, user.email)
    await service.change_password(
        session,
        state.hasher,
        user,
        current_password=data.current_password,
        new_password=data.new_password,
    )
    pair = await tokens.start_session(
        session, state.tokens, user, refresh_ttl_s=state.settings.refresh_token_ttl_s
    )
    await session.commit()
    return _token_read(pair)


# API keys


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(403),
)
async def create_api_key(data: ApiKeyCreate, user: SessionUser, session: Session) -> ApiKeyCreated:
    """Create an API key for a runner (operators and admins); its secret is shown only here."""
    key, secret = await api_keys.create(session, owner=user, name=data.name)
    await session.commit()
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=list[ApiKeyRead])
async def list_api_keys(user: SessionUser, session: Session) -> list[ApiKeyRead]:
    """List the caller's API keys (never their secrets), newest first."""
    return [ApiKeyRead.model_validate(k) for k in await api_keys.list_keys(session, owner=user)]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(key_id: uuid.UUID, user: SessionUser, session: Session) -> None:
    """Revoke one of the caller's API keys; it stops working at once."""
    await api_keys.revoke(session, owner=user, key_id=key_id)
    await session.commit()


# administration


@router.get("/admin/users", response_model=Page[UserRead])
async def list_users(
    admin: AdminUser,
    session: Session,
    role: UserRole | None = None,
    is_active: bool | None = None,
    q: str | None = Query(
        default=None, max_length=320, description="Part of the email or display name."
    ),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[UserRead]:
    """List users, newest first, optionally by role, by active state and by a search of the
    email or display name (admins)."""
    users, total = await service.list_users(
        session, role=role, is_active=is_active, search=q, limit=limit, offset=offset
    )
    return Page[UserRead](
        items=[UserRead.model_validate(u) for u in users], total=total, limit=limit, offset=offset
    )


@router.post("/admin/users/{user_id}/deactivate", response_model=UserRead)
async def deactivate_user(user_id: uuid.UUID, admin: AdminUser, session: Session) -> UserRead:
    """Deactivate a user: their tokens and API keys stop working at once, logins fail."""
    user = await service.set_active(session, admin=admin, user_id=user_id, active=False)
    await session.commit()
    return UserRead.model_validate(user)


@router.post("/admin/users/{user_id}/reset-password", response_model=PasswordResetRead)
async def reset_password(
    user_id: uuid.UUID, admin: AdminUser, session: Session, state: State
) -> PasswordResetRead:
    """Reset a user's password to a random temporary one, shown only in this response; their
    sessions end and every endpoint but the password change answers 403 until they set a new
    password (404: no such user)."""
    temporary = await service.reset_password(session, state.hasher, user_id=user_id)
    await session.commit()
    return PasswordResetRead(user_id=user_id, temporary_password=temporary)


@router.post("/admin/users/{user_id}/reactivate", response_model=UserRead)
async def reactivate_user(user_id: uuid.UUID, admin: AdminUser, session: Session) -> UserRead:
    """Reactivate a user: they can log in again and their unrevoked API keys work again;
    sessions ended by the deactivation stay ended."""
    user = await service.set_active(session, admin=admin, user_id=user_id, active=True)
    await session.commit()
    return UserRead.model_validate(user)
