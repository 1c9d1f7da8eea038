"""Ledger endpoints: admin credits and reconciliation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from dukenet.accounts import repository as accounts_repository
from dukenet.deps import AdminUser, Session
from dukenet.errors import NotFound
from dukenet.ledger import service
from dukenet.ledger.schemas import BalanceRead, CreditRequest, LedgerCheckRead

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
