"""SQL of the agents domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import case, func, label, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents.models import Agent, AgentKind
from dukenet.feedback.models import Feedback
from dukenet.kit.orm import epoch_s
from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task


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
    session: AsyncSession,
    agent_ids: Sequence[uuid.UUID] | None = None,
    *,
    success_threshold: float,
) -> dict[uuid.UUID, tuple[int, int, list[float]]]:
    """Return per agent (finished tasks, successes, latencies in ms) from its outcomes; a
    success is ``Outcome.succeeded(success_threshold)``, as reputation and the series count."""
    success = label("success", Outcome.succeeded(success_threshold))
    stmt = select(Outcome.agent_id, success, Outcome.latency_ms)
    if agent_ids is not None:
        stmt = stmt.where(Outcome.agent_id.in_(list(agent_ids)))
    summary: dict[uuid.UUID, tuple[int, int, list[float]]] = {}
    for agent_id, succeeded, latency in (await session.execute(stmt)).all():
        tasks, successes, latencies = summary.get(agent_id, (0, 0, []))
        if latency is not None:
            latencies.append(float(latency))
        summary[agent_id] = (tasks + 1, successes + int(succeeded), latencies)
    return summary


class BucketCounts(NamedTuple):
    """One bucket's outcomes of an agent: how many, how many succeeded."""

    bucket: int
    outcomes: int
    successes: int


class BucketRatings(NamedTuple):
    """One bucket's buyer ratings (1-5 stars) of an agent's tasks: how many, their mean."""

    bucket: int
    ratings: int
    mean_rating: float


class BucketEvidence(NamedTuple):
    """One outcome as reputation weighs it (``market.reputation.weighted_counts``), with its
    bucket (-1: before the series' start)."""

    bucket: int
    buyer_id: uuid.UUID
    success: bool
    pinned: bool


def _bucket_index(session: AsyncSession, since_s: int, bucket_s: int) -> Any:
    """Return the SQL of an outcome's bucket: ``bucket_s``-second buckets counted from
    ``since_s`` (seconds since 1970, UTC)."""
    return (epoch_s(session, Outcome.created_at) - since_s) // bucket_s


def _in_range(agent_id: uuid.UUID, since_s: int, until_s: int) -> list[Any]:
    return [
        Outcome.agent_id == agent_id,
        Outcome.created_at >= datetime.fromtimestamp(since_s, UTC),
        Outcome.created_at < datetime.fromtimestamp(until_s, UTC),
    ]


async def outcome_buckets(
    session: AsyncSession,
    agent_id: uuid.UUID,
    *,
    since_s: int,
    until_s: int,
    bucket_s: int,
    success_threshold: float,
) -> list[BucketCounts]:
    """Return per non-empty bucket the agent's outcomes finished in [``since_s``, ``until_s``)
    and their successes (``Outcome.succeeded(success_threshold)``, as reputation counts them)."""
    index = _bucket_index(session, since_s, bucket_s).label("bucket")
    success = func.sum(case((Outcome.succeeded(success_threshold), 1), else_=0))
    stmt = (
        select(index, func.count(Outcome.id), success)
        .where(*_in_range(agent_id, since_s, until_s))
        .group_by(index)
    )
    rows = (await session.execute(stmt)).all()
    return [BucketCounts(int(i), int(n), int(ok or 0)) for i, n, ok in rows]


async def rating_buckets(
    session: AsyncSession, agent_id: uuid.UUID, *, since_s: int, until_s: int, bucket_s: int
) -> list[BucketRatings]:
    """Return per bucket the buyers' ratings of the agent's tasks finished in [``since_s``,
    ``until_s``) (by the outcome's time): how many, their mean."""
    index = _bucket_index(session, since_s, bucket_s).label("bucket")
    stmt = (
        select(index, func.count(Feedback.rating), func.avg(Feedback.rating))
        .select_from(Outcome)
        .join(Feedback, Feedback.task_id == Outcome.task_id)
        .where(*_in_range(agent_id, since_s, until_s), Feedback.rating.is_not(None))
        .group_by(index)
    )
    rows = (await session.execute(stmt)).all()
    return [BucketRatings(int(i), int(n), float(mean)) for i, n, mean in rows if n]


async def reputation_evidence(
    session: AsyncSession,
    agent_id: uuid.UUID,
    *,
    since_s: int,
    until_s: int,
    bucket_s: int,
    window: int,
    success_threshold: float,
) -> list[BucketEvidence]:
    """Return, oldest first, what reputation needs at every bucket's end: the agent's last
    ``window`` outcomes before ``since_s`` (bucket -1) and the last ``window`` of each bucket
    in [``since_s``, ``until_s``), with each task's buyer, success
    (``Outcome.succeeded(success_threshold)``) and whether the buyer pinned the agent.

    At most ``window`` x (buckets + 1) rows, however many tasks the agent finished: the last
    ``window`` outcomes before any bucket's end are among them.
    """
    success = label("success", Outcome.succeeded(success_threshold))
    pinned = Task.routing[("constraints", "pinned")].as_boolean().label("pinned")
    columns = (Outcome.created_at, Outcome.id, Task.buyer_id, success, pinned)
    before = (
        select(*columns)
        .join(Task, Task.id == Outcome.task_id)
        .where(
            Outcome.agent_id == agent_id,
            Outcome.created_at < datetime.fromtimestamp(since_s, UTC),
        )
        .order_by(Outcome.created_at.desc(), Outcome.id.desc())
        .limit(window)
    )
    index = _bucket_index(session, since_s, bucket_s)
    rank = func.row_number().over(
        partition_by=index, order_by=(Outcome.created_at.desc(), Outcome.id.desc())
    )
    ranked = (
        select(*columns, index.label("bucket"), rank.label("rank"))
        .join(Task, Task.id == Outcome.task_id)
        .where(*_in_range(agent_id, since_s, until_s))
        .subquery()
    )
    latest = (
        select(ranked.c.bucket, ranked.c.buyer_id, ranked.c.success, ranked.c.pinned)
        .where(ranked.c.rank <= window)
        .order_by(ranked.c.created_at, ranked.c.id)
    )
    earlier = [
        BucketEvidence(-1, buyer, bool(ok), bool(pin))
        for _, _, buyer, ok, pin in reversed((await session.execute(before)).all())
    ]
    later = [
        BucketEvidence(int(i), buyer, bool(ok), bool(pin))
        for i, buyer, ok, pin in (await session.execute(latest)).all()
    ]
    return earlier + later
