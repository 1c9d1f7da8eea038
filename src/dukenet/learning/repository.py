"""SQL of the learning loop."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.learning.models import (
    NOT_ROUTER_TRIGGERS,
    ModelAlias,
    ModelAliasEvent,
    ModelArtifact,
    ModelVersion,
    Outcome,
    TrainingRun,
    TrainingRunStatus,
)
from dukenet.tasks.models import Task


async def recent_success_counts(
    session: AsyncSession, agent_id: uuid.UUID | None, *, window: int, success_threshold: float
) -> tuple[int, int]:
    """Return (successes, total) over the last ``window`` outcomes of one agent, or of every
    agent when ``agent_id`` is None.

    An outcome counts as a success iff ``Outcome.succeeded(success_threshold)``, the label the
    learning loop trains and evaluates on (``service.to_samples``), so reputation, the
    success-drop trigger and the dashboards agree with it about a graded result.
    """
    success = case((Outcome.succeeded(success_threshold), 1), else_=0)
    recent_stmt = select(success.label("success"))
    if agent_id is not None:
        recent_stmt = recent_stmt.where(Outcome.agent_id == agent_id)
    recent = (
        recent_stmt.order_by(Outcome.created_at.desc(), Outcome.id.desc()).limit(window).subquery()
    )
    stmt = select(func.count(), func.coalesce(func.sum(recent.c.success), 0))
    total, successes = (await session.execute(stmt.select_from(recent))).one()
    return int(successes), int(total)


async def count_outcomes(session: AsyncSession) -> int:
    """Return the number of outcomes recorded."""
    return int((await session.execute(select(func.count(Outcome.id)))).scalar_one())


async def all_outcomes(session: AsyncSession) -> Sequence[Outcome]:
    """Return every outcome, oldest first."""
    stmt = select(Outcome).order_by(Outcome.created_at, Outcome.id)
    return (await session.execute(stmt)).scalars().all()


async def versions(session: AsyncSession) -> Sequence[ModelVersion]:
    """Return every model version, oldest first."""
    stmt = select(ModelVersion).order_by(ModelVersion.version)
    return (await session.execute(stmt)).scalars().all()


async def get_version(session: AsyncSession, version: int) -> ModelVersion | None:
    """Return one model version, or None."""
    stmt = select(ModelVersion).where(ModelVersion.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def artifact_sha256(session: AsyncSession, version: int) -> str | None:
    """Return the SHA-256 of a version's stored artifact, or None (none stored)."""
    stmt = select(ModelArtifact.sha256).where(ModelArtifact.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def artifact_content(session: AsyncSession, version: int) -> bytes | None:
    """Return the bytes of a version's stored artifact, or None (none stored)."""
    stmt = select(ModelArtifact.content).where(ModelArtifact.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_version(session: AsyncSession) -> ModelVersion | None:
    """Return the newest model version, or None."""
    stmt = select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def alias_versions(session: AsyncSession, names: Sequence[str]) -> dict[str, int]:
    """Return the version each of the aliases ``names`` points at (unset ones are missing)."""
    stmt = select(ModelAlias.name, ModelAlias.version).where(ModelAlias.name.in_(list(names)))
    return {name: int(version) for name, version in (await session.execute(stmt)).all()}


async def get_alias(
    session: AsyncSession, name: str, *, for_update: bool = False
) -> ModelAlias | None:
    """Return an alias row, or None."""
    stmt = select(ModelAlias).where(ModelAlias.name == name)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def alias_events(session: AsyncSession, name: str) -> Sequence[ModelAliasEvent]:
    """Return the alias's history, oldest first."""
    stmt = (
        select(ModelAliasEvent)
        .where(ModelAliasEvent.alias == name)
        .order_by(ModelAliasEvent.created_at, ModelAliasEvent.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def all_alias_events(session: AsyncSession, *, limit: int = 200) -> Sequence[ModelAliasEvent]:
    """Return the most recent moves of every alias, newest first."""
    stmt = (
        select(ModelAliasEvent)
        .order_by(ModelAliasEvent.created_at.desc(), ModelAliasEvent.id)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def runs(session: AsyncSession, *, limit: int = 100) -> Sequence[TrainingRun]:
    """Return the most recent training runs, newest first."""
    stmt = select(TrainingRun).order_by(TrainingRun.started_at.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def last_successful_outcomes_used(session: AsyncSession) -> int:
    """Return how many outcomes the newest successful training run used (0 if none)."""
    stmt = select(func.max(TrainingRun.outcomes_used)).where(
        TrainingRun.status == TrainingRunStatus.SUCCEEDED,
        TrainingRun.trigger.not_in(NOT_ROUTER_TRIGGERS),
    )
    return int((await session.execute(stmt)).scalar_one() or 0)


async def failed_runs_with_prefix(session: AsyncSession, prefix: str) -> int:
    """Return how many failed training runs have a trigger key starting with ``prefix``."""
    stmt = select(func.count(TrainingRun.id)).where(
        TrainingRun.status == TrainingRunStatus.FAILED, TrainingRun.trigger_key.startswith(prefix)
    )
    return int((await session.execute(stmt)).scalar_one())


async def last_successful_run(session: AsyncSession) -> TrainingRun | None:
    """Return the successful training run that used the most outcomes (the newest), or None."""
    stmt = (
        select(TrainingRun)
        .where(
            TrainingRun.status == TrainingRunStatus.SUCCEEDED,
            TrainingRun.trigger.not_in(NOT_ROUTER_TRIGGERS),
        )
        .order_by(TrainingRun.outcomes_used.desc(), TrainingRun.finished_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def outcome_features(
    session: AsyncSession, *, offset: int, limit: int
) -> tuple[list[str], list[int]]:
    """Return (descriptions, complexities) of outcomes offset..offset+limit, in arrival order."""
    stmt = (
        select(Outcome.description, Outcome.complexity)
        .order_by(Outcome.created_at, Outcome.id)
        .offset(offset)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [r[0] for r in rows], [int(r[1]) for r in rows]


async def stale_runs(session: AsyncSession, *, started_before: datetime) -> Sequence[TrainingRun]:
    """Return runs still marked running that started before ``started_before``."""
    stmt = select(TrainingRun).where(
        TrainingRun.status == TrainingRunStatus.RUNNING, TrainingRun.started_at < started_before
    )
    return (await session.execute(stmt)).scalars().all()


async def outcomes_since(session: AsyncSession, since: datetime) -> Sequence[Outcome]:
    """Return outcomes recorded at or after ``since``, oldest first."""
    stmt = select(Outcome).where(Outcome.created_at >= since).order_by(Outcome.created_at)
    return (await session.execute(stmt)).scalars().all()


async def count_shadowed_tasks(session: AsyncSession, *, since: datetime) -> int:
    """Return how many tasks were created at or after ``since`` (all were shadow-scored)."""
    stmt = select(func.count(Task.id)).where(Task.created_at >= since)
    return int((await session.execute(stmt)).scalar_one())


async def outcome_cost_weights(session: AsyncSession) -> dict[uuid.UUID, float]:
    """Return task id -> the buyer's ``cost_weight`` for every task with an outcome (the routing
    value of a success is derived from it)."""
    stmt = select(Outcome.task_id, Task.cost_weight).join(Task, Task.id == Outcome.task_id)
    return {row[0]: float(row[1]) for row in (await session.execute(stmt)).all()}
