"""SQL of the curation queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.curation.models import CurationDecision
from dukenet.feedback.models import Evaluation, EvaluationStatus, Feedback, OutcomeLabel
from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task, TaskResult, TaskStatus

CandidateRow = tuple[Task, Outcome, TaskResult | None, Feedback | None, Evaluation | None]


async def candidates(
    session: AsyncSession, *, success_threshold: float, agent_id: uuid.UUID | None
) -> list[CandidateRow]:
    """Return (task, outcome, result, feedback, evaluation) rows of every task that may belong
    in the queue (rejected, rated low, corrected, failed by an evaluator or failed at all),
    newest first; the caller decides the reasons."""
    stmt = (
        select(Task, Outcome, TaskResult, Feedback, Evaluation)
        .join(Outcome, Outcome.task_id == Task.id)
        .outerjoin(TaskResult, TaskResult.task_id == Task.id)
        .outerjoin(Feedback, Feedback.task_id == Task.id)
        .outerjoin(Evaluation, Evaluation.task_id == Task.id)
        .where(
            or_(
                Task.status == TaskStatus.REJECTED,
                Feedback.rating <= 2,
                Feedback.thumbs_up.is_(False),
                Feedback.correction.is_not(None),
                and_(
                    Evaluation.status == EvaluationStatus.DONE,
                    Evaluation.quality < success_threshold,
                ),
                Evaluation.status == EvaluationStatus.FAILED,
                Outcome.quality < success_threshold,
            )
        )
        .order_by(Task.created_at.desc(), Task.id)
    )
    if agent_id is not None:
        stmt = stmt.where(Outcome.agent_id == agent_id)
    return [(r[0], r[1], r[2], r[3], r[4]) for r in (await session.execute(stmt)).all()]


async def succeeded_elsewhere(
    session: AsyncSession, keys: Sequence[tuple[uuid.UUID, str, int]], *, success_threshold: float
) -> dict[tuple[uuid.UUID, str, int], set[uuid.UUID]]:
    """For (buyer, description, complexity) keys, return the agents whose outcome on the same
    buyer's identical task was a success."""
    if not keys:
        return {}
    descriptions = {d for _, d, _ in keys}
    stmt = (
        select(Task.buyer_id, Task.description, Task.complexity, Outcome.agent_id)
        .join(Outcome, Outcome.task_id == Task.id)
        .where(Task.description.in_(descriptions), Outcome.quality >= success_threshold)
    )
    found: dict[tuple[uuid.UUID, str, int], set[uuid.UUID]] = {}
    wanted = set(keys)
    for buyer_id, description, complexity, agent_id in (await session.execute(stmt)).all():
        key = (buyer_id, description, complexity)
        if key in wanted:
            found.setdefault(key, set()).add(agent_id)
    return found


async def label_counts(
    session: AsyncSession, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Return how many labels each task's outcome was given."""
    if not task_ids:
        return {}
    stmt = (
        select(OutcomeLabel.task_id, func.count())
        .where(OutcomeLabel.task_id.in_(task_ids))
        .group_by(OutcomeLabel.task_id)
    )
    return {task_id: int(n) for task_id, n in (await session.execute(stmt)).all()}


async def latest_decisions(
    session: AsyncSession, task_ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, CurationDecision]:
    """Return the newest decision on each task (on ``task_ids``, or every task)."""
    stmt = select(CurationDecision).order_by(CurationDecision.created_at, CurationDecision.id)
    if task_ids is not None:
        if not task_ids:
            return {}
        stmt = stmt.where(CurationDecision.task_id.in_(task_ids))
    return {d.task_id: d for d in (await session.execute(stmt)).scalars()}


async def decisions(session: AsyncSession, task_id: uuid.UUID) -> Sequence[CurationDecision]:
    """Return every decision on a task, oldest first."""
    stmt = (
        select(CurationDecision)
        .where(CurationDecision.task_id == task_id)
        .order_by(CurationDecision.created_at, CurationDecision.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def task_state(
    session: AsyncSession, task_id: uuid.UUID
) -> tuple[Task, Outcome, Feedback | None, Evaluation | None] | None:
    """Return the task, its outcome, feedback and evaluation, or None without an outcome."""
    stmt = (
        select(Task, Outcome, Feedback, Evaluation)
        .join(Outcome, Outcome.task_id == Task.id)
        .outerjoin(Feedback, Feedback.task_id == Task.id)
        .outerjoin(Evaluation, Evaluation.task_id == Task.id)
        .where(Task.id == task_id)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return row[0], row[1], row[2], row[3]


async def lock_outcome(session: AsyncSession, task_id: uuid.UUID) -> None:
    """Lock the task's outcome row (PostgreSQL) so concurrent decisions on it serialise."""
    await session.execute(select(Outcome.id).where(Outcome.task_id == task_id).with_for_update())
