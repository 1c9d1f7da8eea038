"""System statistics for admins."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.learning import service as learning_service
from dukenet.monitoring import repository
from dukenet.monitoring.schemas import SystemMetricsRead
from dukenet.tasks import repository as tasks_repository


async def system_metrics(session: AsyncSession) -> SystemMetricsRead:
    """Return task counts by status, users (by role), enabled agents, the success rate over all
    outcomes, satoshis released from escrow, training samples and the production model."""
    by_status = await tasks_repository.count_by_status(session)
    by_role = await repository.users_by_role(session)
    outcomes, successes = await repository.outcome_totals(session)
    champion = await learning_service.champion_version(session)
    return SystemMetricsRead(
        tasks_by_status=by_status,
        tasks=sum(by_status.values()),
        users=sum(by_role.values()),
        users_by_role=by_role,
        active_agents=await repository.count_enabled_agents(session),
        outcomes=outcomes,
        success_rate=successes / outcomes if outcomes else None,
        satoshis_transacted=await repository.released_sat(session),
        training_samples=outcomes,
        production_model_version=champion,
        production_model_samples=(
            None if champion is None else await repository.outcomes_seen_by(session, champion)
        ),
    )


async def prometheus_totals(session: AsyncSession) -> dict[str, Any]:
    """Return the database-wide figures ``Metrics.set_totals`` takes: ``tasks_by_status``,
    ``moved_sat`` (satoshis per ledger transaction kind) and ``active_agents``."""
    return {
        "tasks_by_status": await tasks_repository.count_by_status(session),
        "moved_sat": await repository.moved_sat_by_kind(session),
        "active_agents": await repository.count_enabled_agents(session),
    }
