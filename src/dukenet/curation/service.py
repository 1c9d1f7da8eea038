"""The curation queue and curators' decisions.

A task is in the queue while it has a reason (``CurationReason``); ``status="open"`` lists those
no curator has decided since they last changed. Each item carries a ``version`` (a hash of the
task's status and times, its outcome's label and label count, and its feedback); a decision
names the version it was made on and is refused with 409 when the task changed meanwhile.
Decisions relabel the outcome as the ``curator`` (the strongest label source).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents import service as agents_service
from dukenet.config import Settings
from dukenet.curation import repository
from dukenet.curation.models import CurationAction, CurationDecision
from dukenet.curation.schemas import (
    CurationDecisionCreate,
    CurationDecisionRead,
    CurationItemRead,
    CurationReason,
)
from dukenet.errors import Conflict, NotFound
from dukenet.feedback import labels
from dukenet.feedback.models import Evaluation, EvaluationStatus, Feedback
from dukenet.learning.models import LabelSource, Outcome
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task, TaskResult, TaskStatus

QueueStatus = Literal["open", "decided", "all"]


def _version(
    task: Task,
    outcome: Outcome,
    feedback: Feedback | None,
    evaluation: Evaluation | None,
    n_labels: int,
) -> str:
    parts = [
        task.status.value,
        task.updated_at.isoformat(),
        repr(outcome.quality),
        outcome.label_source.value,
        str(n_labels),
        feedback.updated_at.isoformat() if feedback is not None else "-",
        evaluation.status.value if evaluation is not None else "-",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _routing_suggestions(outcome: Outcome) -> list[uuid.UUID]:
    """Return the agents the receipt rated better than the chosen one: a higher predicted
    success, or a lower price at no lower predicted success."""
    candidates: list[dict[str, Any]] = list(outcome.routing.get("candidates") or [])
    chosen = next((c for c in candidates if c.get("agent_id") == str(outcome.agent_id)), None)
    if chosen is None:
        return []
    better = [
        uuid.UUID(c["agent_id"])
        for c in candidates
        if c["agent_id"] != chosen["agent_id"]
        and (
            c["p_success"] > chosen["p_success"]
            or (c["price_sat"] < chosen["price_sat"] and c["p_success"] >= chosen["p_success"])
        )
    ]
    return better


def _reasons(
    task: Task,
    outcome: Outcome,
    feedback: Feedback | None,
    evaluation: Evaluation | None,
    elsewhere: set[uuid.UUID],
    threshold: float,
) -> tuple[list[CurationReason], list[uuid.UUID]]:
    reasons: list[CurationReason] = []
    if task.status is TaskStatus.REJECTED:
        reasons.append(CurationReason.REJECTED)
    if feedback is not None and (
        (feedback.rating is not None and feedback.rating <= 2) or feedback.thumbs_up is False
    ):
        reasons.append(CurationReason.LOW_RATING)
    if feedback is not None and feedback.correction is not None:
        reasons.append(CurationReason.CORRECTED)
    if (
        evaluation is not None
        and evaluation.status is EvaluationStatus.DONE
        and evaluation.quality is not None
        and evaluation.quality < threshold
    ):
        reasons.append(CurationReason.EVALUATOR_FAILED)
    if evaluation is not None and evaluation.status is EvaluationStatus.FAILED:
        reasons.append(CurationReason.EVALUATOR_ERROR)
    suggested: list[uuid.UUID] = []
    if outcome.quality < threshold:
        suggested = _routing_suggestions(outcome)
        suggested += sorted(a for a in elsewhere - {outcome.agent_id} if a not in suggested)
        if suggested:
            reasons.append(CurationReason.ROUTING_SUSPECT)
    return reasons, suggested


async def queue(
    session: AsyncSession,
    *,
    settings: Settings,
    reason: CurationReason | None = None,
    status: QueueStatus = "open",
    agent_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CurationItemRead], int]:
    """Return a page of the queue, newest task first, and the total: tasks with at least one
    reason (only ``reason`` when given), of ``agent_id`` when given; ``status`` ``open`` (no
    decision since the task last changed), ``decided`` or ``all``."""
    threshold = settings.success_threshold
    rows = await repository.candidates(session, success_threshold=threshold, agent_id=agent_id)
    failed = [
        (row[0].buyer_id, row[0].description, row[0].complexity)
        for row in rows
        if row[1].quality < threshold
    ]
    elsewhere = await repository.succeeded_elsewhere(session, failed, success_threshold=threshold)
    task_ids = [row[0].id for row in rows]
    counts = await repository.label_counts(session, task_ids)
    latest = await repository.latest_decisions(session, task_ids)
    items: list[CurationItemRead] = []
    for task, outcome, result, feedback, evaluation in rows:
        reasons, suggested = _reasons(
            task,
            outcome,
            feedback,
            evaluation,
            elsewhere.get((task.buyer_id, task.description, task.complexity), set()),
            threshold,
        )
        if not reasons or (reason is not None and reason not in reasons):
            continue
        version = _version(task, outcome, feedback, evaluation, counts.get(task.id, 0))
        decision = latest.get(task.id)
        decided = decision is not None and decision.task_version == version
        if (status == "open" and decided) or (status == "decided" and not decided):
            continue
        items.append(
            _item(
                task, outcome, result, feedback, evaluation, reasons, suggested, version, decision
            )
        )
    return items[offset : offset + limit], len(items)


def _item(
    task: Task,
    outcome: Outcome,
    result: TaskResult | None,
    feedback: Feedback | None,
    evaluation: Evaluation | None,
    reasons: list[CurationReason],
    suggested: list[uuid.UUID],
    version: str,
    decision: CurationDecision | None,
) -> CurationItemRead:
    return CurationItemRead(
        task_id=task.id,
        version=version,
        reasons=reasons,
        description=task.description,
        complexity=task.complexity,
        status=task.status,
        agent_id=outcome.agent_id,
        result_text=result.text if result is not None else None,
        quality=outcome.quality,
        label_source=outcome.label_source,
        rating=feedback.rating if feedback is not None else None,
        thumbs_up=feedback.thumbs_up if feedback is not None else None,
        correction=feedback.correction if feedback is not None else None,
        rejection_reason=task.rejection_reason,
        evaluation_error=evaluation.error if evaluation is not None else None,
        suggested_agent_ids=suggested,
        created_at=task.created_at,
        decision=None if decision is None else CurationDecisionRead.model_validate(decision),
    )


async def current_version(session: AsyncSession, task_id: uuid.UUID) -> tuple[Task, Outcome, str]:
    """Return the task, its outcome and its current queue version.

    Raises:
        NotFound: no such task, or it has no outcome (nothing to curate).
    """
    rows = await repository.task_state(session, task_id)
    if rows is None:
        raise NotFound(f"task {task_id} has no outcome to curate")
    task, outcome, feedback, evaluation = rows
    counts = await repository.label_counts(session, [task_id])
    return task, outcome, _version(task, outcome, feedback, evaluation, counts.get(task_id, 0))


async def decide(
    session: AsyncSession,
    *,
    settings: Settings,
    curator: User,
    task_id: uuid.UUID,
    data: CurationDecisionCreate,
) -> CurationDecision:
    """Record a curator's decision on the task at ``data.version``; ``approve`` and
    ``ideal_response`` give the outcome a curator label (``data.quality``, defaults 1.0 and
    0.0) and recompute the agent's reputation when its quality moves.

    Raises:
        NotFound: no such task with an outcome, or no such ``router_agent_id``.
        Conflict: the task changed since ``data.version`` (reload the queue and decide again).
    """
    await repository.lock_outcome(session, task_id)
    _, outcome, version = await current_version(session, task_id)
    if version != data.version:
        raise Conflict(
            f"task {task_id} changed since version {data.version} (now {version}); reload it"
        )
    if data.router_agent_id is not None:
        await agents_service.get(session, data.router_agent_id)
    quality = data.quality
    if data.action is CurationAction.APPROVE and quality is None:
        quality = 1.0
    if data.action is CurationAction.IDEAL_RESPONSE and quality is None:
        quality = 0.0
    decision = CurationDecision(
        task_id=task_id,
        curator_id=curator.id,
        action=data.action,
        quality=quality,
        ideal_response=data.ideal_response,
        router_agent_id=data.router_agent_id,
        note=data.note,
        task_version=version,
    )
    session.add(decision)
    await session.flush()
    if quality is not None:
        change = await labels.apply(
            session,
            task_id=task_id,
            source=LabelSource.CURATOR,
            kind=f"curator_{data.action.value}",
            quality=quality,
            confidence=labels.CURATOR_CONFIDENCE,
            success_threshold=settings.success_threshold,
            detail={"decision_id": str(decision.id), "note": data.note},
            actor_id=curator.id,
        )
        if change.quality_changed:
            await tasks_service.update_agent_reputation(
                session, settings, outcome.agent_id, count_finished=False
            )
    # The decision was made on this version; stamp it with the version its own label made, so
    # the task does not reappear as open because of the curator's own relabel.
    _, _, decision.task_version = await current_version(session, task_id)
    await session.flush()
    return decision


async def history(session: AsyncSession, task_id: uuid.UUID) -> Sequence[CurationDecision]:
    """Return every curator decision on a task, oldest first."""
    return await repository.decisions(session, task_id)
