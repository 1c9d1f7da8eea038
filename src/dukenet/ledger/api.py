"""Ledger endpoints: admin credits and reconciliation, the caller's money over time."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from dukenet.accounts import repository as accounts_repository
from dukenet.deps import AdminUser, CurrentUser, Session
from dukenet.errors import NotFound
from dukenet.kit.openapi import error_responses
from dukenet.ledger import service
from dukenet.ledger.schemas import (
    BalanceRead,
    CreditRequest,
    LedgerCheckRead,
    MoneyBucket,
    MoneySeriesRead,
)

router = APIRouter(tags=["ledger"])


@router.post("/admin/users/{user_id}/credit", response_model=BalanceRead)
async def credit(
    user_id: uuid.UUID, data: CreditRequest, admin: AdminUser, session: Session
) -> BalanceRead:
    """Credit a user's wallet (a deposit from outside the marketplace)."""
    if await accounts_repository.get(session, user_id) is None:
        raise NotFound(f"user {user_id} not found")
    await service.deposit(session, user_id=user_id, amount_sat=data.amount_sat, memo=data.memo)
    await session.commit()
    name = service.wallet_name(user_id)
    return BalanceRead(account_name=name, balance_sat=await service.balance(session, name))


@router.get("/admin/ledger/check", response_model=LedgerCheckRead)
async def check(admin: AdminUser, session: Session) -> LedgerCheckRead:
    """Recompute every balance from the ledger entries and report differences."""
    return await service.check(session)


@router.get("/ledger/series", response_model=MoneySeriesRead, responses=error_responses(404))
async def money_series(
    user: CurrentUser,
    session: Session,
    bucket: MoneyBucket = MoneyBucket.DAY,
    days: int = Query(default=30, ge=1, le=366, description="The window: the last N days"),
    agent_id: uuid.UUID | None = Query(
        default=None, description="Only this agent's earnings (one of the caller's agents)"
    ),
) -> MoneySeriesRead:
    """Sum the caller's ledger entries by hour, day or week (UTC): deposits, spending and
    refunds of the wallet, earnings and payouts of the caller's agents, in satoshis.

    Hour buckets cover at most 31 days; empty buckets are included.
    """
    return await service.money_series(
        session, user=user, bucket=bucket, days=days, agent_id=agent_id
    )
