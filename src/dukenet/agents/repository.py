"""SQL of the agents domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents.models import Agent, AgentKind
from dukenet.learning.models import Outcome


async def get(
    session: AsyncSession, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent | None:
    """Return the agent with this id (row-locked on PostgreSQL if ``for_update``), or None."""
    stmt = select(Agent).where(Agent.id == agent_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, name: str) -> Agent | None:
    """Return the agent with this name, or None."""
    return (await session.execute(select(Agent).where(Agent.name == name))).scalar_one_or_none()


async def list_all(
    session: AsyncSession,
    *,
    enabled_only: bool = False,
    kinds: Sequence[AgentKind] | None = None,
    owner_id: uuid.UUID | None = None,
) -> Sequence[Agent]:
    """Return agents ordered by name, optionally filtered."""
    stmt = select(Agent).order_by(Agent.name)
    if enabled_only:
        stmt = stmt.where(Agent.is_enabled.is_(True))
    if kinds is not None:
        stmt = stmt.where(Agent.kind.in_(list(kinds)))
    if owner_id is not None:
        stmt = stmt.where(Agent.owner_id == owner_id)
    return (await session.execute(stmt)).scalars().all()


async def outcome_summaries(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, tuple[int, int, list[float]]]:
    """Return per agent (finished tasks, successes, latencies in ms) from its outcomes."""
    stmt = select(Outcome.agent_id, Outcome.success, Outcome.latency_ms)
    if agent_ids is not None:
        stmt = stmt.where(Outcome.agent_id.in_(list(agent_ids)))
    summary: dict[uuid.UUID, tuple[int, int, list[float]]] = {}
    for agent_id, success, latency in (await session.execute(stmt)).all():
        tasks, successes, latencies = summary.get(agent_id, (0, 0, []))
        if latency is not None:
            latencies.append(float(latency))
        summary[agent_id] = (tasks + 1, successes + int(success), latencies)
    return summary
