"""SQL of payouts and deposits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.payments.models import Deposit, DepositStatus, Payout, PayoutStatus

OPEN_PAYOUT_STATUSES = (PayoutStatus.REQUESTED, PayoutStatus.SENDING)


async def get_payout(
    session: AsyncSession, payout_id: uuid.UUID, *, for_update: bool = False
) -> Payout | None:
    """Return a payout (row-locked on PostgreSQL if ``for_update``), or None."""
    stmt = select(Payout).where(Payout.id == payout_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_payout_by_key(
    session: AsyncSession, requested_by_id: uuid.UUID, key: str
) -> Payout | None:
    """Return the user's payout requested with this idempotency key, or None."""
    stmt = select(Payout).where(
        Payout.requested_by_id == requested_by_id, Payout.idempotency_key == key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def live_payout_for_hash(session: AsyncSession, payment_hash: str) -> Payout | None:
    """Return a payout of this payment hash that is open or paid (not rejected or failed)."""
    stmt = select(Payout).where(
        Payout.payment_hash == payment_hash,
        Payout.status.in_([*OPEN_PAYOUT_STATUSES, PayoutStatus.PAID]),
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def list_payouts(
    session: AsyncSession,
    *,
    requested_by_id: uuid.UUID | None,
    status: PayoutStatus | None,
    agent_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Payout], int]:
    """Return a page of payouts, newest first, and the total matching the filters (every
    requester's if ``requested_by_id`` is None)."""
    where: list[ColumnElement[bool]] = []
    if requested_by_id is not None:
        where.append(Payout.requested_by_id == requested_by_id)
    if status is not None:
        where.append(Payout.status == status)
    if agent_id is not None:
        where.append(Payout.agent_id == agent_id)
    stmt = (
        select(Payout)
        .where(*where)
        .order_by(Payout.created_at.desc(), Payout.id)
        .limit(limit)
        .offset(offset)
    )
    total = (await session.execute(select(func.count(Payout.id)).where(*where))).scalar_one()
    return (await session.execute(stmt)).scalars().all(), int(total)


async def open_payout_sums(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Return per agent the satoshis held by its requested or sending payouts."""
    stmt = (
        select(Payout.agent_id, func.sum(Payout.amount_sat))
        .where(Payout.agent_id.in_(list(agent_ids)), Payout.status.in_(OPEN_PAYOUT_STATUSES))
        .group_by(Payout.agent_id)
    )
    return {a: int(s) for a, s in (await session.execute(stmt)).all()}


async def sending_payout_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Return the ids of payouts whose payment is in flight, oldest first."""
    stmt = (
        select(Payout.id)
        .where(Payout.status == PayoutStatus.SENDING)
        .order_by(Payout.created_at, Payout.id)
    )
    return list((await session.execute(stmt)).scalars())


async def get_deposit(
    session: AsyncSession, deposit_id: uuid.UUID, *, for_update: bool = False
) -> Deposit | None:
    """Return a deposit (row-locked on PostgreSQL if ``for_update``), or None."""
    stmt = select(Deposit).where(Deposit.id == deposit_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_deposit_by_key(session: AsyncSession, user_id: uuid.UUID, key: str) -> Deposit | None:
    """Return the user's deposit created with this idempotency key, or None."""
    stmt = select(Deposit).where(Deposit.user_id == user_id, Deposit.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_deposits(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    status: DepositStatus | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Deposit], int]:
    """Return a page of deposits, newest first, and the total (every user's if ``user_id`` is
    None)."""
    where: list[ColumnElement[bool]] = []
    if user_id is not None:
        where.append(Deposit.user_id == user_id)
    if status is not None:
        where.append(Deposit.status == status)
    stmt = (
        select(Deposit)
        .where(*where)
        .order_by(Deposit.created_at.desc(), Deposit.id)
        .limit(limit)
        .offset(offset)
    )
    total = (await session.execute(select(func.count(Deposit.id)).where(*where))).scalar_one()
    return (await session.execute(stmt)).scalars().all(), int(total)


async def pending_deposit_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Return the ids of deposits whose invoice is not paid yet, oldest first."""
    stmt = (
        select(Deposit.id)
        .where(Deposit.status == DepositStatus.PENDING)
        .order_by(Deposit.created_at, Deposit.id)
    )
    return list((await session.execute(stmt)).scalars())
