"""Operator endpoints: my agents, and the tasks my agents ran."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from dukenet.agents.schemas import AgentRead
from dukenet.deps import OperatorUser, Session
from dukenet.kit.schema import Page
from dukenet.operator import service
from dukenet.operator.schemas import AgentTaskRead
from dukenet.tasks.models import TaskStatus

router = APIRouter(prefix="/operator", tags=["operator"])


@router.get("/agents", response_model=list[AgentRead])
async def my_agents(user: OperatorUser, session: Session) -> list[AgentRead]:
    """List the caller's own agents, disabled ones included, by name."""
    return [AgentRead.model_validate(a) for a in await service.my_agents(session, user=user)]


@router.get(
    "/tasks",
    response_model=Page[AgentTaskRead],
    responses={404: {"description": "Not one of your agents"}},
)
async def agent_tasks(
    user: OperatorUser,
    session: Session,
    agent_id: uuid.UUID | None = None,
    status_filter: TaskStatus | None = Query(default=None, alias="status"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[AgentTaskRead]:
    """List the tasks the caller's agents ran or hold, newest first, with their outcome,
    the buyer's rating and the rejection reason (``agent_id``: one of the caller's agents)."""
    items, total = await service.agent_tasks(
        session, user=user, agent_id=agent_id, status=status_filter, limit=limit, offset=offset
    )
    return Page[AgentTaskRead](items=items, total=total, limit=limit, offset=offset)
