"""Recording a buyer's feedback and feeding it into the outcome data."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents import service as agents_service
from dukenet.config import Settings
from dukenet.errors import Conflict, Forbidden, NotFound
from dukenet.feedback import evaluation as evaluation_service
from dukenet.feedback import labels
from dukenet.feedback.models import Evaluation, EvaluationStatus, Feedback, OutcomeLabel
from dukenet.feedback.schemas import (
    AgreementRead,
    EvaluationRead,
    FeedbackWrite,
    JudgeAgreementRead,
    LabelRead,
    OutcomeLabelsRead,
)
from dukenet.learning.models import LabelSource, Outcome
from dukenet.tasks import repository as tasks_repository
from dukenet.tasks import service as tasks_service


def quality_from(feedback: FeedbackWrite) -> float | None:
    """Map feedback to a quality in [0, 1]: a rating r gives (r - 1) / 4; otherwise thumbs up
    gives 1 and thumbs down 0; None when neither was given."""
    if feedback.rating is not None:
        return (feedback.rating - 1) / 4
    if feedback.thumbs_up is not None:
        return 1.0 if feedback.thumbs_up else 0.0
    return None


async def put(
    session: AsyncSession,
    *,
    settings: Settings,
    buyer: User,
    task_id: uuid.UUID,
    data: FeedbackWrite,
) -> tuple[Feedback, float | None]:
    """Create or replace the buyer's feedback on the task's result; a rating or thumbs labels
    the outcome as the buyer's (``quality_from``, ``feedback.labels``: a curator's label still
    wins) and recomputes the agent's reputation, which counts a success as ``quality >=
    settings.success_threshold``. Returns (feedback, quality).

    Raises:
        NotFound: no such task visible to the buyer.
        Forbidden: an admin (who sees every task) is not the buyer and may not rate for them.
        Conflict: the task has no result yet.
    """
    task = await tasks_service.get_visible(session, user=buyer, task_id=task_id)
    if task.buyer_id != buyer.id:
        raise Forbidden("only the task's buyer gives feedback on its result")
    result = await tasks_repository.get_result(session, task.id)
    if result is None:
        raise Conflict(f"task {task_id} has no result to give feedback on")
    feedback = (
        await session.execute(select(Feedback).where(Feedback.result_id == result.id))
    ).scalar_one_or_none()
    if feedback is None:
        feedback = Feedback(result_id=result.id, task_id=task.id, buyer_id=task.buyer_id)
        session.add(feedback)
    feedback.thumbs_up = data.thumbs_up
    feedback.rating = data.rating
    feedback.comment = data.comment
    feedback.correction = data.correction
    quality = quality_from(data)
    outcome = (
        await session.execute(select(Outcome.agent_id).where(Outcome.task_id == task.id))
    ).scalar_one_or_none()
    if quality is not None and outcome is not None:
        change = await labels.apply(
            session,
            task_id=task.id,
            source=LabelSource.BUYER,
            kind="rating" if data.rating is not None else "thumbs",
            quality=quality,
            confidence=labels.BUYER_CONFIDENCE,
            success_threshold=settings.success_threshold,
            detail={"rating": data.rating, "thumbs_up": data.thumbs_up},
            actor_id=buyer.id,
        )
        if change.quality_changed:
            await tasks_service.update_agent_reputation(
                session, settings, outcome, count_finished=False
            )
    await session.flush()
    return feedback, quality


async def get(session: AsyncSession, *, user: User, task_id: uuid.UUID) -> Feedback:
    """Return the feedback on a task's result.

    Raises:
        NotFound: no such task visible to the caller, or no feedback yet.
    """
    task = await tasks_service.get_visible(session, user=user, task_id=task_id)
    feedback = (
        await session.execute(select(Feedback).where(Feedback.task_id == task.id))
    ).scalar_one_or_none()
    if feedback is None:
        raise NotFound(f"no feedback on task {task_id}")
    return feedback


async def outcome_labels(
    session: AsyncSession, *, user: User, task_id: uuid.UUID
) -> OutcomeLabelsRead:
    """Return the label a task's outcome carries, every label it was given and its evaluation.

    Raises:
        NotFound: no such task visible to the caller, or it has no outcome yet.
    """
    task = await tasks_service.get_visible(session, user=user, task_id=task_id)
    outcome = (
        await session.execute(select(Outcome).where(Outcome.task_id == task.id))
    ).scalar_one_or_none()
    if outcome is None:
        raise NotFound(f"task {task_id} has no outcome yet")
    evaluation = await evaluation_service.get(session, task.id)
    return OutcomeLabelsRead(
        task_id=task.id,
        quality=outcome.quality,
        label_source=outcome.label_source,
        label_confidence=outcome.label_confidence,
        labels=[LabelRead.model_validate(x) for x in await labels.history(session, task.id)],
        evaluation=None if evaluation is None else EvaluationRead.model_validate(evaluation),
    )


def agreement(pairs: list[tuple[bool, bool]]) -> AgreementRead:
    """Return the agreement and Cohen's kappa of (judge, reference) pass/fail pairs."""
    n = len(pairs)
    if n == 0:
        return AgreementRead(n=0, agreement=None, kappa=None)
    observed = sum(a == b for a, b in pairs) / n
    p_judge = sum(a for a, _ in pairs) / n
    p_reference = sum(b for _, b in pairs) / n
    chance = p_judge * p_reference + (1 - p_judge) * (1 - p_reference)
    kappa = None if chance >= 1.0 else (observed - chance) / (1 - chance)
    return AgreementRead(n=n, agreement=observed, kappa=kappa)


async def judge_agreement(
    session: AsyncSession, *, success_threshold: float
) -> list[JudgeAgreementRead]:
    """Return, per judge agent, its verdicts, failures and agreement with the newest buyer and
    curator label of each outcome it judged (pass: quality >= ``success_threshold``)."""
    evaluations = (
        (await session.execute(select(Evaluation).where(Evaluation.judge_agent_id.is_not(None))))
        .scalars()
        .all()
    )
    task_ids = [e.task_id for e in evaluations if e.status is EvaluationStatus.DONE]
    newest: dict[tuple[uuid.UUID, LabelSource], float] = {}
    if task_ids:
        stmt = (
            select(OutcomeLabel)
            .where(
                OutcomeLabel.task_id.in_(task_ids),
                OutcomeLabel.source.in_([LabelSource.BUYER, LabelSource.CURATOR]),
            )
            .order_by(OutcomeLabel.created_at, OutcomeLabel.id)
        )
        for label in (await session.execute(stmt)).scalars():
            newest[(label.task_id, label.source)] = label.quality
    rows: list[JudgeAgreementRead] = []
    by_agent: dict[uuid.UUID, list[Evaluation]] = {}
    for e in evaluations:
        assert e.judge_agent_id is not None
        by_agent.setdefault(e.judge_agent_id, []).append(e)
    for agent_id, group in by_agent.items():
        agent = await agents_service.get(session, agent_id)
        done = [e for e in group if e.status is EvaluationStatus.DONE and e.quality is not None]
        failed = sorted(
            (e for e in group if e.status is EvaluationStatus.FAILED),
            key=lambda e: e.updated_at,
        )
        pairs: dict[LabelSource, list[tuple[bool, bool]]] = {
            LabelSource.BUYER: [],
            LabelSource.CURATOR: [],
        }
        for e in done:
            assert e.quality is not None
            for source, found in pairs.items():
                reference = newest.get((e.task_id, source))
                if reference is not None:
                    found.append((e.quality >= success_threshold, reference >= success_threshold))
        rows.append(
            JudgeAgreementRead(
                agent_id=agent_id,
                agent_name=agent.name,
                verdicts=len(done),
                failures=len(failed),
                failure_reasons=[e.error or "" for e in failed[-5:]],
                buyer=agreement(pairs[LabelSource.BUYER]),
                curator=agreement(pairs[LabelSource.CURATOR]),
            )
        )
    return sorted(rows, key=lambda r: r.agent_name)
