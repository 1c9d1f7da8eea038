"""SQL of tasks: the order book (claims with SKIP LOCKED), leases and results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.files.models import TaskFile
from dukenet.tasks.models import Task, TaskResult, TaskStatus


async def get(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> Task | None:
    """Return a task (row-locked on PostgreSQL if ``for_update``), or None."""
    stmt = select(Task).where(Task.id == task_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_with_result(
    session: AsyncSession, task_id: uuid.UUID
) -> tuple[Task, TaskResult | None, bool] | None:
    """Return (task, its result or None, whether files are attached to it) in one query, or
    None when there is no such task."""
    has_files = select(TaskFile.file_id).where(TaskFile.task_id == Task.id).exists()
    stmt = (
        select(Task, TaskResult, has_files)
        .outerjoin(TaskResult, TaskResult.task_id == Task.id)
        .where(Task.id == task_id)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return row[0], row[1], bool(row[2])


async def get_by_idempotency_key(
    session: AsyncSession, buyer_id: uuid.UUID, key: str
) -> Task | None:
    """Return the buyer's task created with this idempotency key, or None."""
    stmt = select(Task).where(Task.buyer_id == buyer_id, Task.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_for_buyer(
    session: AsyncSession,
    buyer_id: uuid.UUID | None,
    *,
    status: TaskStatus | None,
    limit: int,
    offset: int,
    agent_id: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[Sequence[Task], int]:
    """Return a page of tasks, newest first, and the total; all buyers if ``buyer_id`` is None.

    Filters: ``status``, ``agent_id`` (the agent the task is assigned to), and creation time in
    ``[created_from, created_to)``.
    """
    where: list[ColumnElement[bool]] = []
    if buyer_id is not None:
        where.append(Task.buyer_id == buyer_id)
    if status is not None:
        where.append(Task.status == status)
    if agent_id is not None:
        where.append(Task.agent_id == agent_id)
    if created_from is not None:
        where.append(Task.created_at >= created_from)
    if created_to is not None:
        where.append(Task.created_at < created_to)
    stmt = (
        select(Task)
        .where(*where)
        .order_by(Task.created_at.desc(), Task.id)
        .limit(limit)
        .offset(offset)
    )
    items = (await session.execute(stmt)).scalars().all()
    total = (await session.execute(select(func.count(Task.id)).where(*where))).scalar_one()
    return items, int(total)


def _ready(now: datetime) -> ColumnElement[bool]:
    """Past its retry backoff (or never backed off)."""
    return or_(Task.available_at.is_(None), Task.available_at <= now)


async def next_claimable(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID], now: datetime
) -> Task | None:
    """Lock and return the oldest assigned task of these agents that is past its retry backoff
    at ``now`` (FOR UPDATE SKIP LOCKED)."""
    stmt = (
        select(Task)
        .where(
            Task.status == TaskStatus.ASSIGNED,
            Task.agent_id.in_(list(agent_ids)),
            _ready(now),
        )
        .order_by(Task.created_at, Task.id)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def claimable(
    session: AsyncSession, task_id: uuid.UUID, agent_ids: Sequence[uuid.UUID], now: datetime
) -> Task | None:
    """Lock and return this task if it is assigned to one of these agents, past its retry
    backoff at ``now`` and not locked by another claim (SKIP LOCKED), else None."""
    stmt = (
        select(Task)
        .where(
            Task.id == task_id,
            Task.status == TaskStatus.ASSIGNED,
            Task.agent_id.in_(list(agent_ids)),
            _ready(now),
        )
        .with_for_update(skip_locked=True, key_share=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def unclaimed_since(
    session: AsyncSession, before: datetime, *, limit: int = 100
) -> Sequence[Task]:
    """Lock and return assigned tasks that became claimable before ``before`` and are still not
    claimed (SKIP LOCKED), oldest first."""
    stmt = (
        select(Task)
        .where(Task.status == TaskStatus.ASSIGNED, Task.assigned_at < before)
        .order_by(Task.assigned_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.execute(stmt)).scalars().all()


def _claimable_since() -> ColumnElement[datetime]:
    """When an assigned task last became claimable by anyone: the end of the backoff after its
    last attempt, else its creation. Unlike ``assigned_at`` it does not move when the task is
    offered to another agent or left waiting for another claim timeout."""
    return func.coalesce(Task.available_at, Task.created_at)


async def unclaimed_before(
    session: AsyncSession, before: datetime, *, limit: int = 100
) -> Sequence[Task]:
    """Lock and return assigned tasks claimable since before ``before`` (``_claimable_since``)
    and still not claimed (SKIP LOCKED), oldest first."""
    stmt = (
        select(Task)
        .where(Task.status == TaskStatus.ASSIGNED, _claimable_since() < before)
        .order_by(_claimable_since(), Task.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def queued_for_agent(
    session: AsyncSession, agent_id: uuid.UUID, *, limit: int = 10_000
) -> Sequence[Task]:
    """Lock and return the agent's assigned (not yet claimed) tasks, oldest first."""
    stmt = (
        select(Task)
        .where(Task.status == TaskStatus.ASSIGNED, Task.agent_id == agent_id)
        .order_by(Task.created_at, Task.id)
        .limit(limit)
        .with_for_update(key_share=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def inbox(
    session: AsyncSession,
    agent_ids: Sequence[uuid.UUID],
    *,
    statuses: Sequence[TaskStatus],
    limit: int,
    offset: int,
) -> tuple[Sequence[Task], int]:
    """Return a page of tasks assigned to these agents in these statuses, oldest first, and the
    total."""
    where = (Task.agent_id.in_(list(agent_ids)), Task.status.in_(list(statuses)))
    stmt = select(Task).where(*where).order_by(Task.created_at, Task.id).limit(limit).offset(offset)
    items = (await session.execute(stmt)).scalars().all()
    total = (await session.execute(select(func.count(Task.id)).where(*where))).scalar_one()
    return items, int(total)


async def due_for_settlement(
    session: AsyncSession, now: datetime, *, limit: int = 100
) -> Sequence[Task]:
    """Lock and return delivered tasks whose dispute window ended before ``now``."""
    stmt = (
        select(Task)
        .where(Task.status == TaskStatus.DELIVERED, Task.accept_by < now)
        .order_by(Task.accept_by)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def expired_leases(
    session: AsyncSession, now: datetime, *, limit: int = 100
) -> Sequence[Task]:
    """Lock and return executing tasks whose lease expired before ``now``."""
    stmt = (
        select(Task)
        .where(Task.status == TaskStatus.EXECUTING, Task.lease_expires_at < now)
        .order_by(Task.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_result(session: AsyncSession, task_id: uuid.UUID) -> TaskResult | None:
    """Return a task's result, or None."""
    stmt = select(TaskResult).where(TaskResult.task_id == task_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_result_by_key(session: AsyncSession, key: str) -> TaskResult | None:
    """Return the result submitted with this idempotency key, or None."""
    stmt = select(TaskResult).where(TaskResult.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Return the number of tasks in each status."""
    stmt = select(Task.status, func.count(Task.id)).group_by(Task.status)
    return {str(s.value): int(n) for s, n in (await session.execute(stmt)).all()}
