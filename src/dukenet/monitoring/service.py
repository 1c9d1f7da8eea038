"""System statistics for admins."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.learning import service as learning_service
from dukenet.learning import triggers
from dukenet.monitoring import repository
from dukenet.monitoring.schemas import SystemMetricsRead
from dukenet.tasks import repository as tasks_repository


async def system_metrics(session: AsyncSession, *, success_threshold: float) -> SystemMetricsRead:
    """Return task counts by status, users (by role), enabled agents, the success rate over all
    outcomes (an outcome succeeded when its quality is at least ``success_threshold``, the
    settings' ``success_threshold``), satoshis released from escrow, training samples and the
    production model."""
    by_status = await tasks_repository.count_by_status(session)
    by_role = await repository.users_by_role(session)
    outcomes, successes = await repository.outcome_totals(
        session, success_threshold=success_threshold
    )
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


async def prometheus_totals(
    session: AsyncSession, *, settings: Settings, check_ledger: bool
) -> dict[str, Any]:
    """Return the database-wide figures ``Metrics.set_totals`` takes: ``tasks_by_status``,
    ``moved_sat`` (satoshis per ledger transaction kind), ``active_agents``, outcomes (all and
    the last ``success_drop_window``), training runs, the queue's oldest claimable task and the
    executing tasks' leases per agent kind, and, when ``check_ledger``, the ledger check (a full
    scan of its entries)."""
    now = utcnow()
    failures, succeeded_at = await repository.training_failures_since_success(session)
    # the window the success-drop trigger watches, counted as it counts
    recent_successes, recent = await triggers.recent_success_counts(
        session, window=settings.success_drop_window, success_threshold=settings.success_threshold
    )
    return {
        "now": now,
        "tasks_by_status": await tasks_repository.count_by_status(session),
        "moved_sat": await repository.moved_sat_by_kind(session),
        "active_agents": await repository.count_enabled_agents(session),
        "ledger": await repository.ledger_discrepancies(session) if check_ledger else None,
        "outcomes": await repository.outcome_totals(
            session, success_threshold=settings.success_threshold
        ),
        "recent_outcomes": (recent, recent_successes),
        "training_runs": await repository.training_runs_by_status(session),
        "training_failures": failures,
        "training_succeeded_at": succeeded_at,
        "oldest_claimable": await repository.oldest_claimable_by_kind(session, now),
        "leases": await repository.leases_by_kind(session, now),
        "lease_s": settings.lease_s,
    }
