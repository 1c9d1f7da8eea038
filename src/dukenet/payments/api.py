"""Payments endpoints: operators' balances and payouts, admins' approvals, deposits."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.deps import AdminUser, Session, SessionUser
from dukenet.kit.openapi import error_responses
from dukenet.kit.schema import Page
from dukenet.payments import service
from dukenet.payments.deps import PayoutUser, Provider
from dukenet.payments.models import DepositStatus, PayoutStatus
from dukenet.payments.schemas import (
    DepositCreate,
    DepositRead,
    PayoutBalancesRead,
    PayoutCreate,
    PayoutRead,
    PayoutReject,
)

router = APIRouter(tags=["payments"])

Limit = Query(default=50, ge=1, le=500)
Offset = Query(default=0, ge=0, le=2**62)


async def _payout_page(
    session: AsyncSession,
    requested_by_id: uuid.UUID | None,
    status_filter: PayoutStatus | None,
    agent_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> Page[PayoutRead]:
    items, total = await service.list_payouts(
        session,
        requested_by_id=requested_by_id,
        status=status_filter,
        agent_id=agent_id,
        limit=limit,
        offset=offset,
    )
    return Page(
        items=[PayoutRead.model_validate(p) for p in items], total=total, limit=limit, offset=offset
    )


@router.get("/payouts/balances", response_model=PayoutBalancesRead)
async def payout_balances(user: PayoutUser, session: Session) -> PayoutBalancesRead:
    """Show each of your agents' earned balance (sat), what open payouts hold, and the totals."""
    return await service.balances(session, user=user)


@router.post(
    "/payouts",
    status_code=status.HTTP_201_CREATED,
    response_model=PayoutRead,
    responses=error_responses(404),
)
async def request_payout(
    data: PayoutCreate, user: PayoutUser, session: Session, provider: Provider, response: Response
) -> PayoutRead:
    """Request a payout of an agent's earnings to your wallet or out of the platform; the amount
    is held until an admin approves or rejects it. A repeated ``idempotency_key`` returns the
    first payout (200). 409 when the balance does not cover it."""
    payout, created = await service.request_payout(session, provider=provider, user=user, data=data)
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return PayoutRead.model_validate(payout)


@router.get("/payouts", response_model=Page[PayoutRead])
async def list_payouts(
    user: PayoutUser,
    session: Session,
    status_filter: PayoutStatus | None = Query(default=None, alias="status"),
    agent_id: uuid.UUID | None = None,
    limit: int = Limit,
    offset: int = Offset,
) -> Page[PayoutRead]:
    """List your payouts, newest first."""
    return await _payout_page(session, user.id, status_filter, agent_id, limit, offset)


@router.get("/payouts/{payout_id}", response_model=PayoutRead)
async def get_payout(payout_id: uuid.UUID, user: PayoutUser, session: Session) -> PayoutRead:
    """Show one of your payouts (admins: any)."""
    return PayoutRead.model_validate(
        await service.get_visible_payout(session, user=user, payout_id=payout_id)
    )


@router.get("/admin/payouts", response_model=Page[PayoutRead])
async def admin_list_payouts(
    admin: AdminUser,
    session: Session,
    status_filter: PayoutStatus | None = Query(default=None, alias="status"),
    agent_id: uuid.UUID | None = None,
    limit: int = Limit,
    offset: int = Offset,
) -> Page[PayoutRead]:
    """List every operator's payouts, newest first (``status=requested``: those to decide)."""
    return await _payout_page(session, None, status_filter, agent_id, limit, offset)


@router.post("/admin/payouts/{payout_id}/approve", response_model=PayoutRead)
async def approve_payout(
    payout_id: uuid.UUID, admin: AdminUser, session: Session, provider: Provider
) -> PayoutRead:
    """Approve a requested payout and pay it: ``paid``, ``failed`` (the amount returned to the
    agent) or still ``sending`` (approve again, or ``dukenet payouts sync``, to resume).
    Approving twice pays once; 409 for a rejected or failed payout."""
    payout, _ = await service.approve(session, provider=provider, admin=admin, payout_id=payout_id)
    await session.commit()
    if payout.status is PayoutStatus.SENDING:
        payout = await service.send(session, provider=provider, payout_id=payout_id)
        await session.commit()
    return PayoutRead.model_validate(payout)


@router.post("/admin/payouts/{payout_id}/reject", response_model=PayoutRead)
async def reject_payout(
    payout_id: uuid.UUID, data: PayoutReject, admin: AdminUser, session: Session
) -> PayoutRead:
    """Reject a requested payout: the held amount returns to the agent. Rejecting twice
    returns it once; 409 once it is being sent or paid."""
    payout, _ = await service.reject(session, admin=admin, payout_id=payout_id, reason=data.reason)
    await session.commit()
    return PayoutRead.model_validate(payout)


@router.post("/deposits", status_code=status.HTTP_201_CREATED, response_model=DepositRead)
async def create_deposit(
    data: DepositCreate,
    user: SessionUser,
    session: Session,
    provider: Provider,
    response: Response,
) -> DepositRead:
    """Get an invoice for a deposit into your wallet (Lightning provider; 409 with the
    ledger-only one, where an admin credits wallets). A repeated ``idempotency_key`` returns the
    first deposit (200)."""
    deposit, created = await service.create_deposit(
        session, provider=provider, user=user, data=data
    )
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return DepositRead.model_validate(deposit)


@router.get("/deposits", response_model=Page[DepositRead])
async def list_deposits(
    user: SessionUser,
    session: Session,
    status_filter: DepositStatus | None = Query(default=None, alias="status"),
    limit: int = Limit,
    offset: int = Offset,
) -> Page[DepositRead]:
    """List your deposits, newest first."""
    items, total = await service.list_deposits(
        session, user_id=user.id, status=status_filter, limit=limit, offset=offset
    )
    return Page(
        items=[DepositRead.model_validate(d) for d in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/deposits/{deposit_id}", response_model=DepositRead)
async def get_deposit(
    deposit_id: uuid.UUID, user: SessionUser, session: Session, provider: Provider
) -> DepositRead:
    """Show a deposit, first asking the provider whether its invoice is paid: a paid invoice
    credits your wallet once."""
    await service.get_visible_deposit(session, user=user, deposit_id=deposit_id)
    deposit = await service.refresh_deposit(session, provider=provider, deposit_id=deposit_id)
    await session.commit()
    return DepositRead.model_validate(deposit)
