"""System statistics for admins."""

from __future__ import annotations

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents.models import Agent
from dukenet.learning import service as learning_service
from dukenet.learning.models import Outcome
from dukenet.monitoring.schemas import SystemMetricsRead
from dukenet.tasks import repository as tasks_repository


async def system_metrics(session: AsyncSession) -> SystemMetricsRead:
    """Return task counts by status, users, enabled agents, the success rate over all outcomes,
    satoshis paid for finished tasks and the champion version."""
    users = (await session.execute(select(func.count(User.id)))).scalar_one()
    agents = (
        await session.execute(select(func.count(Agent.id)).where(Agent.is_enabled.is_(True)))
    ).scalar_one()
    successes, total, transacted = (
        await session.execute(
            select(
                func.coalesce(func.sum(func.cast(Outcome.success, Integer)), 0),
                func.count(Outcome.id),
                func.coalesce(func.sum(Outcome.price_sat), 0),
            )
        )
    ).one()
    return SystemMetricsRead(
        tasks_by_status=await tasks_repository.count_by_status(session),
        users=int(users),
        active_agents=int(agents),
        outcomes=int(total),
        success_rate=(int(successes) / int(total)) if total else None,
        satoshis_transacted=int(transacted),
        champion_version=await learning_service.champion_version(session),
    )
