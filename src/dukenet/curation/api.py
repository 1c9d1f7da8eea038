"""Curation endpoints (admins): the queue, decisions on a task, its decision history."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from dukenet.curation import service
from dukenet.curation.schemas import (
    CurationDecisionCreate,
    CurationDecisionRead,
    CurationItemRead,
    CurationReason,
)
from dukenet.deps import AdminUser, Session, State
from dukenet.kit.schema import Page

router = APIRouter(prefix="/admin/curation", tags=["curation"])


@router.get("/queue", response_model=Page[CurationItemRead])
async def get_queue(
    admin: AdminUser,
    session: Session,
    state: State,
    reason: CurationReason | None = None,
    status: service.QueueStatus = "open",
    agent_id: uuid.UUID | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[CurationItemRead]:
    """List results worth a curator's look (rejected, rated low, corrected, failed or not judged
    by an evaluator, suspiciously routed), newest first; filter by reason, status and agent."""
    items, total = await service.queue(
        session,
        settings=state.settings,
        reason=reason,
        status=status,
        agent_id=agent_id,
        limit=limit,
        offset=offset,
    )
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("/tasks/{task_id}/decisions", response_model=CurationDecisionRead, status_code=201)
async def post_decision(
    task_id: uuid.UUID,
    data: CurationDecisionCreate,
    admin: AdminUser,
    session: Session,
    state: State,
) -> CurationDecisionRead:
    """Decide on a task's result (approve, ideal response, router label, discard) at the queue
    item's ``version``; 409 when the task changed since."""
    decision = await service.decide(
        session, settings=state.settings, curator=admin, task_id=task_id, data=data
    )
    await session.commit()
    return CurationDecisionRead.model_validate(decision)


@router.get("/tasks/{task_id}/decisions", response_model=list[CurationDecisionRead])
async def get_decisions(
    task_id: uuid.UUID, admin: AdminUser, session: Session
) -> list[CurationDecisionRead]:
    """List every curator decision on a task, oldest first, with who and when."""
    return [CurationDecisionRead.model_validate(d) for d in await service.history(session, task_id)]
