"""SQL of the files domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents.models import Agent
from dukenet.files.models import File, TaskFile
from dukenet.tasks.models import FINAL_STATUSES, Task


async def get(session: AsyncSession, file_id: uuid.UUID) -> File | None:
    """Return the file with this id, or None."""
    return (await session.execute(select(File).where(File.id == file_id))).scalar_one_or_none()


async def get_by_sha256(session: AsyncSession, owner_id: uuid.UUID, sha256: str) -> File | None:
    """Return the owner's file with this SHA-256 (hex), or None."""
    stmt = select(File).where(File.owner_id == owner_id, File.sha256 == sha256)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(session: AsyncSession, file_ids: Sequence[uuid.UUID]) -> Sequence[File]:
    """Return the files with these ids (missing ids are left out)."""
    if not file_ids:
        return []
    return (await session.execute(select(File).where(File.id.in_(file_ids)))).scalars().all()


async def list_page(
    session: AsyncSession, owner_id: uuid.UUID | None, *, limit: int, offset: int
) -> tuple[Sequence[File], int]:
    """Return a page of files, newest first, and the total; all owners' if ``owner_id`` is None."""
    stmt = select(File)
    count = select(func.count(File.id))
    if owner_id is not None:
        stmt = stmt.where(File.owner_id == owner_id)
        count = count.where(File.owner_id == owner_id)
    stmt = stmt.order_by(File.created_at.desc(), File.id).limit(limit).offset(offset)
    items = (await session.execute(stmt)).scalars().all()
    return items, int((await session.execute(count)).scalar_one())


async def delete_file(session: AsyncSession, file: File) -> None:
    """Delete a file's row and its task attachments (flushes)."""
    await session.execute(delete(TaskFile).where(TaskFile.file_id == file.id))
    await session.delete(file)
    await session.flush()


async def get_task(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """Return the task with this id, or None."""
    return (await session.execute(select(Task).where(Task.id == task_id))).scalar_one_or_none()


async def attached_file_ids(session: AsyncSession, task_id: uuid.UUID) -> set[uuid.UUID]:
    """Return the ids of the files attached to a task."""
    stmt = select(TaskFile.file_id).where(TaskFile.task_id == task_id)
    return set((await session.execute(stmt)).scalars().all())


async def list_for_task(session: AsyncSession, task_id: uuid.UUID) -> Sequence[File]:
    """Return the files attached to a task, in the order they were attached."""
    stmt = (
        select(File)
        .join(TaskFile, TaskFile.file_id == File.id)
        .where(TaskFile.task_id == task_id)
        .order_by(TaskFile.created_at, File.name, File.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def is_attached_for_operator(
    session: AsyncSession, *, file_id: uuid.UUID, task_id: uuid.UUID, operator_id: uuid.UUID
) -> bool:
    """Return True when the task lists the file and its assigned agent is the operator's."""
    stmt = (
        select(TaskFile.file_id)
        .join(Task, Task.id == TaskFile.task_id)
        .join(Agent, Agent.id == Task.agent_id)
        .where(
            TaskFile.file_id == file_id,
            TaskFile.task_id == task_id,
            Agent.owner_id == operator_id,
        )
    )
    return (await session.execute(stmt)).first() is not None


async def active_task_ids(session: AsyncSession, file_id: uuid.UUID) -> Sequence[uuid.UUID]:
    """Return the ids of unfinished tasks the file is attached to."""
    stmt = (
        select(Task.id)
        .join(TaskFile, TaskFile.task_id == Task.id)
        .where(TaskFile.file_id == file_id, Task.status.not_in(list(FINAL_STATUSES)))
        .order_by(Task.created_at)
    )
    return (await session.execute(stmt)).scalars().all()
