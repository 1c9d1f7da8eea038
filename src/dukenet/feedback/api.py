"""Feedback endpoints: a buyer rates the result of their task."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from dukenet.deps import AdminUser, CurrentUser, Session, State
from dukenet.feedback import service
from dukenet.feedback.schemas import (
    FeedbackRead,
    FeedbackWrite,
    JudgeAgreementRead,
    OutcomeLabelsRead,
)
from dukenet.kit.openapi import error_responses

router = APIRouter(tags=["feedback"])


@router.put(
    "/tasks/{task_id}/feedback", response_model=FeedbackRead, responses=error_responses(403)
)
async def put_feedback(
    task_id: uuid.UUID, data: FeedbackWrite, user: CurrentUser, session: Session, state: State
) -> FeedbackRead:
    """Give (or replace) feedback on your task's result; a rating or thumbs sets its quality (and
    so the agent's reputation)."""
    feedback, quality = await service.put(
        session, settings=state.settings, buyer=user, task_id=task_id, data=data
    )
    await session.commit()
    return FeedbackRead.model_validate(feedback).model_copy(update={"outcome_quality": quality})


@router.get("/tasks/{task_id}/feedback", response_model=FeedbackRead)
async def get_feedback(task_id: uuid.UUID, user: CurrentUser, session: Session) -> FeedbackRead:
    """Show the feedback on your task's result."""
    feedback = await service.get(session, user=user, task_id=task_id)
    return FeedbackRead.model_validate(feedback).model_copy(
        update={"outcome_quality": service.quality_from(FeedbackWrite.model_validate(feedback))}
    )


@router.get("/tasks/{task_id}/labels", response_model=OutcomeLabelsRead)
async def get_labels(task_id: uuid.UUID, user: CurrentUser, session: Session) -> OutcomeLabelsRead:
    """Show the label your task's outcome carries, where it came from, every label it was given
    and the evaluator's verdict."""
    return await service.outcome_labels(session, user=user, task_id=task_id)


@router.get("/admin/judges/agreement", response_model=list[JudgeAgreementRead])
async def judges_agreement(
    admin: AdminUser, session: Session, state: State
) -> list[JudgeAgreementRead]:
    """Show each LLM judge's verdicts, failures and agreement (share and Cohen's kappa) with
    buyers' and curators' labels on the outcomes it judged."""
    return await service.judge_agreement(
        session, success_threshold=state.settings.success_threshold
    )
