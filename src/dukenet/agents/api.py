"""Agents endpoints: register, list, show, enable/disable."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, status

from dukenet.accounts.models import UserRole
from dukenet.agents import service
from dukenet.agents.schemas import AgentCreate, AgentDetail, AgentRead, AgentStatsRead
from dukenet.deps import CurrentUser, OperatorUser, Session, State

router = APIRouter(tags=["agents"])


@router.post("/agents", status_code=status.HTTP_201_CREATED, response_model=AgentDetail)
async def register(
    data: AgentCreate, user: OperatorUser, session: Session, state: State
) -> AgentDetail:
    """Register an agent (operators: ``llm``; admins also ``replay``)."""
    agent = await service.register(session, settings=state.settings, owner=user, data=data)
    await session.commit()
    return AgentDetail.model_validate(agent)


@router.get("/agents", response_model=list[AgentRead])
async def list_agents(user: CurrentUser, session: Session) -> list[AgentRead]:
    """List the market's enabled agents (admins see disabled ones too)."""
    agents = await service.list_agents(session, enabled_only=user.role is not UserRole.ADMIN)
    return [AgentRead.model_validate(a) for a in agents]


@router.get("/agents/leaderboard", response_model=list[AgentStatsRead])
async def leaderboard(
    user: CurrentUser, session: Session, min_tasks: int = Query(default=1, ge=0, le=10_000)
) -> list[AgentStatsRead]:
    """Rank the market's agents by their smoothed success rate, with tasks, earnings, latency."""
    return await service.leaderboard(session, min_tasks=min_tasks)


@router.get("/agents/{agent_id}/stats", response_model=AgentStatsRead)
async def agent_stats(agent_id: uuid.UUID, user: CurrentUser, session: Session) -> AgentStatsRead:
    """Show an agent's finished tasks, success rate, earnings (sat) and p50/p95 latency (ms)."""
    agent = await service.get(session, agent_id)
    return (await service.stats(session, [agent]))[0]


@router.get("/agents/{agent_id}", response_model=AgentDetail | AgentRead)
async def get_agent(
    agent_id: uuid.UUID, user: CurrentUser, session: Session
) -> AgentDetail | AgentRead:
    """Show one agent; its operator and admins also see its configuration."""
    agent = await service.get(session, agent_id)
    if user.role is UserRole.ADMIN or agent.owner_id == user.id:
        return AgentDetail.model_validate(agent)
    return AgentRead.model_validate(agent)


@router.post("/agents/{agent_id}/enable", response_model=AgentRead)
async def enable(agent_id: uuid.UUID, user: OperatorUser, session: Session) -> AgentRead:
    """Put an agent back on the market."""
    agent = await service.set_enabled(session, actor=user, agent_id=agent_id, enabled=True)
    await session.commit()
    return AgentRead.model_validate(agent)


@router.post("/agents/{agent_id}/disable", response_model=AgentRead)
async def disable(agent_id: uuid.UUID, user: OperatorUser, session: Session) -> AgentRead:
    """Take an agent off the market; tasks already assigned to it stay queued."""
    agent = await service.set_enabled(session, actor=user, agent_id=agent_id, enabled=False)
    await session.commit()
    return AgentRead.model_validate(agent)
