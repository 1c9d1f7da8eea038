"""SQL of the monitoring domain: marketplace-wide counts read across the domains' tables."""

from __future__ import annotations

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents.models import Agent
from dukenet.learning.models import ModelVersion, Outcome
from dukenet.ledger.models import LedgerEntry, LedgerTransaction, LedgerTransactionKind


async def users_by_role(session: AsyncSession) -> dict[str, int]:
    """Return the number of users per role (roles without users are absent)."""
    stmt = select(User.role, func.count(User.id)).group_by(User.role)
    return {str(role.value): int(n) for role, n in (await session.execute(stmt)).all()}


async def count_enabled_agents(session: AsyncSession) -> int:
    """Return the number of agents on the market (enabled)."""
    stmt = select(func.count(Agent.id)).where(Agent.is_enabled.is_(True))
    return int((await session.execute(stmt)).scalar_one())


async def outcome_totals(session: AsyncSession) -> tuple[int, int]:
    """Return (outcomes, successful outcomes) over every recorded outcome."""
    stmt = select(
        func.count(Outcome.id), func.coalesce(func.sum(func.cast(Outcome.success, Integer)), 0)
    )
    total, successes = (await session.execute(stmt)).one()
    return int(total), int(successes)


async def released_sat(session: AsyncSession) -> int:
    """Return the satoshis paid out of escrow (the credits of every ``escrow_release``
    transaction: agents' earnings plus platform fees); refunds are not counted."""
    stmt = (
        select(func.coalesce(func.sum(LedgerEntry.amount_sat), 0))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.kind == LedgerTransactionKind.ESCROW_RELEASE,
            LedgerEntry.amount_sat > 0,
        )
    )
    return int((await session.execute(stmt)).scalar_one())


async def outcomes_seen_by(session: AsyncSession, version: int) -> int | None:
    """Return how many outcomes model ``version`` was trained on, or None if no such version."""
    stmt = select(ModelVersion.outcomes_seen).where(ModelVersion.version == version)
    seen = (await session.execute(stmt)).scalar_one_or_none()
    return None if seen is None else int(seen)


async def moved_sat_by_kind(session: AsyncSession) -> dict[str, int]:
    """Return, per ledger transaction kind, the satoshis moved (the sum of its credits)."""
    stmt = (
        select(LedgerTransaction.kind, func.coalesce(func.sum(LedgerEntry.amount_sat), 0))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.amount_sat > 0)
        .group_by(LedgerTransaction.kind)
    )
    return {str(kind.value): int(n) for kind, n in (await session.execute(stmt)).all()}
