"""Reads for an agent operator: their agents, and the tasks those agents ran with outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dukenet.accounts.models import User, UserRole
from dukenet.agents import service as agents_service
from dukenet.agents.models import Agent
from dukenet.errors import NotFound
from dukenet.feedback.models import Feedback
from dukenet.learning.models import Outcome
from dukenet.operator.schemas import AgentTaskRead
from dukenet.tasks.models import Task, TaskStatus


async def my_agents(session: AsyncSession, *, user: User) -> Sequence[Agent]:
    """Return the caller's own agents, enabled or not, ordered by name."""
    return await agents_service.list_agents(session, owner_id=user.id)


async def _agent_ids(
    session: AsyncSession, *, user: User, agent_id: uuid.UUID | None
) -> list[uuid.UUID]:
    if agent_id is not None:
        agent = await agents_service.get(session, agent_id)
        if agent.owner_id != user.id and user.role is not UserRole.ADMIN:
            raise NotFound(f"agent {agent_id} not found")
        return [agent.id]
    return [a.id for a in await my_agents(session, user=user)]


async def agent_tasks(
    session: AsyncSession,
    *,
    user: User,
    agent_id: uuid.UUID | None,
    status: TaskStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[AgentTaskRead], int]:
    """Return a page of the tasks assigned to the caller's agents (or to ``agent_id``, one of
    them; admins: any agent), newest first, with each task's outcome, rating and rejection
    reason, and the total.

    Raises:
        NotFound: ``agent_id`` is not an agent of the caller's (not revealed).
    """
    ids = await _agent_ids(session, user=user, agent_id=agent_id)
    if not ids:
        return [], 0
    where: list[ColumnElement[bool]] = [Task.agent_id.in_(ids)]
    if status is not None:
        where.append(Task.status == status)
    total = await session.scalar(select(func.count()).select_from(Task).where(*where))
    tasks = (
        await session.scalars(
            select(Task)
            .where(*where)
            .order_by(Task.created_at.desc(), Task.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    task_ids = [t.id for t in tasks]
    outcomes = {
        o.task_id: o
        for o in (await session.scalars(select(Outcome).where(Outcome.task_id.in_(task_ids))))
    }
    feedback = {
        f.task_id: f
        for f in (
            await session.scalars(
                select(Feedback)
                .where(Feedback.task_id.in_(task_ids))
                .order_by(Feedback.updated_at.desc())
            )
        )
    }
    items = []
    for task in tasks:
        outcome = outcomes.get(task.id)
        fb = feedback.get(task.id)
        items.append(
            AgentTaskRead.model_validate(task).model_copy(
                update={
                    "success": None if outcome is None else outcome.success,
                    "quality": None if outcome is None else outcome.quality,
                    "rating": None if fb is None else fb.rating,
                    "thumbs_up": None if fb is None else fb.thumbs_up,
                }
            )
        )
    return items, int(total or 0)
