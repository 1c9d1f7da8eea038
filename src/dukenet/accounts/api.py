"""Accounts endpoints: register, log in, profile."""

from __future__ import annotations

from fastapi import APIRouter, status

from dukenet.accounts import service
from dukenet.accounts.models import UserRole
from dukenet.accounts.schemas import LoginRequest, ProfileRead, TokenRead, UserCreate, UserRead
from dukenet.deps import CurrentUser, Session, State
from dukenet.ledger import service as ledger_service

router = APIRouter(tags=["accounts"])


@router.post("/auth/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(data: UserCreate, session: Session, state: State) -> UserRead:
    """Register a buyer or an agent operator."""
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


@router.post("/auth/login", response_model=TokenRead)
async def login(data: LoginRequest, session: Session, state: State) -> TokenRead:
    """Exchange email and password for a bearer access token."""
    user = await service.authenticate(
        session, state.hasher, email=str(data.email), password=data.password
    )
    return TokenRead(access_token=state.tokens.issue(user), expires_in=state.tokens.ttl_s)


@router.get("/users/me", response_model=ProfileRead)
async def me(user: CurrentUser, session: Session) -> ProfileRead:
    """Return the caller's profile and wallet balance."""
    balance = await ledger_service.balance(session, ledger_service.wallet_name(user.id))
    return ProfileRead(**UserRead.model_validate(user).model_dump(), balance_sat=balance)
