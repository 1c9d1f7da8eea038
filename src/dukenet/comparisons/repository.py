"""SQL of comparisons."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dukenet.comparisons.models import Comparison, ComparisonPayment, ComparisonStatus
from dukenet.curation.models import CurationAction, CurationDecision
from dukenet.tasks.models import Task, TaskResult


async def get(
    session: AsyncSession, comparison_id: uuid.UUID, *, for_update: bool = False
) -> Comparison | None:
    """Return a comparison (row-locked on PostgreSQL if ``for_update``), or None."""
    stmt = select(Comparison).where(Comparison.id == comparison_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_for_task(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> Comparison | None:
    """Return the comparison the task is a side of (first or second), or None."""
    stmt = select(Comparison).where(
        or_(Comparison.task_id == task_id, Comparison.sibling_task_id == task_id)
    )
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_for_buyer(
    session: AsyncSession,
    buyer_id: uuid.UUID | None,
    *,
    status: ComparisonStatus | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Comparison], int]:
    """Return a page of the buyer's comparisons (everyone's for None), newest first, and the
    total."""
    conditions = []
    if buyer_id is not None:
        conditions.append(Comparison.buyer_id == buyer_id)
    if status is not None:
        conditions.append(Comparison.status == status)
    total = (
        await session.execute(select(func.count()).select_from(Comparison).where(*conditions))
    ).scalar_one()
    stmt = (
        select(Comparison)
        .where(*conditions)
        .order_by(Comparison.created_at.desc(), Comparison.id)
        .limit(limit)
        .offset(offset)
    )
    return (await session.execute(stmt)).scalars().all(), int(total)


async def lapsed(session: AsyncSession, now: datetime, *, limit: int = 100) -> Sequence[Comparison]:
    """Lock and return open ``winner``-mode comparisons whose pick window ended before ``now``
    (SKIP LOCKED: concurrent sweepers take different rows)."""
    stmt = (
        select(Comparison)
        .where(
            Comparison.status == ComparisonStatus.OPEN,
            Comparison.payment == ComparisonPayment.WINNER,
            Comparison.pick_by < now,
        )
        .order_by(Comparison.pick_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


PickedPair = tuple[Comparison, Task, Task, str | None, str | None]
"""A picked comparison, its winning and losing tasks and their result texts."""


async def picked_pairs(session: AsyncSession) -> Sequence[PickedPair]:
    """Return every picked comparison with (winner task, loser task, winner text, loser text),
    oldest pick first."""
    winner = aliased(Task)
    loser = aliased(Task)
    winner_result = aliased(TaskResult)
    loser_result = aliased(TaskResult)
    loser_id = func.coalesce(
        # the side that is not the winner
        func.nullif(Comparison.task_id, Comparison.winner_task_id),
        Comparison.sibling_task_id,
    )
    stmt = (
        select(Comparison, winner, loser, winner_result.text, loser_result.text)
        .join(winner, winner.id == Comparison.winner_task_id)
        .join(loser, loser.id == loser_id)
        .outerjoin(winner_result, winner_result.task_id == winner.id)
        .outerjoin(loser_result, loser_result.task_id == loser.id)
        .where(Comparison.status == ComparisonStatus.PICKED)
        .order_by(Comparison.picked_at, Comparison.id)
    )
    return [tuple(row) for row in (await session.execute(stmt)).all()]  # type: ignore[misc]


async def discarded_task_ids(
    session: AsyncSession, task_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Return which of ``task_ids`` a curator discarded (kept out of every dataset)."""
    if not task_ids:
        return set()
    stmt = select(CurationDecision.task_id).where(
        CurationDecision.task_id.in_(task_ids),
        CurationDecision.action == CurationAction.DISCARD,
    )
    return set((await session.execute(stmt)).scalars().all())
