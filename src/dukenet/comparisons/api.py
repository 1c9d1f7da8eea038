"""Comparison endpoints: ask for a second answer, list and read comparisons, pick the better
answer (the buyer, or an admin as a curator)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status

from dukenet.comparisons import service
from dukenet.comparisons.models import ComparisonStatus
from dukenet.comparisons.schemas import CompareRequest, ComparisonRead, PickRequest
from dukenet.deps import CurrentUser, Session, State
from dukenet.kit.openapi import error_responses
from dukenet.kit.schema import Page

router = APIRouter(tags=["comparisons"])


@router.post(
    "/tasks/{task_id}/compare",
    status_code=status.HTTP_201_CREATED,
    response_model=ComparisonRead,
    responses={
        **error_responses(400, 402, 404, 409),
        200: {"model": ComparisonRead, "description": "The task's comparison, made earlier"},
    },
)
async def compare_task(
    task_id: uuid.UUID,
    data: CompareRequest,
    user: CurrentUser,
    session: Session,
    state: State,
    response: Response,
) -> ComparisonRead:
    """Have a second agent answer one of your tasks (Duke's choice among the others, or
    ``agent_id``); its price is held in escrow too. Asking again returns the comparison (200)."""
    comparison, created = await service.request(
        session,
        settings=state.settings,
        champion=state.champion,
        user=user,
        task_id=task_id,
        data=data,
    )
    read = ComparisonRead.model_validate(comparison)
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return read


@router.get("/comparisons", response_model=Page[ComparisonRead])
async def list_comparisons(
    user: CurrentUser,
    session: Session,
    status: ComparisonStatus | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[ComparisonRead]:
    """List your comparisons (every buyer's for an admin), newest first, filtered by status."""
    items, total = await service.list_visible(
        session, user=user, status=status, limit=limit, offset=offset
    )
    return Page(
        items=[ComparisonRead.model_validate(c) for c in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/comparisons/{comparison_id}", response_model=ComparisonRead, responses=error_responses(404)
)
async def get_comparison(
    comparison_id: uuid.UUID, user: CurrentUser, session: Session
) -> ComparisonRead:
    """Show a comparison: its two tasks, how it pays, and the pick."""
    comparison = await service.get_visible(session, user=user, comparison_id=comparison_id)
    return ComparisonRead.model_validate(comparison)


@router.post(
    "/comparisons/{comparison_id}/pick",
    response_model=ComparisonRead,
    responses=error_responses(400, 404, 409),
)
async def pick_comparison(
    comparison_id: uuid.UUID,
    data: PickRequest,
    user: CurrentUser,
    session: Session,
    state: State,
) -> ComparisonRead:
    """Pick the better of the two delivered answers (the buyer, or an admin as a curator): the
    winner is labelled a success; in ``winner`` mode it is paid and the other answer's escrow
    refunded, each in a ledger transaction of its own task, committed together. A second pick
    answers 409."""
    comparison = await service.pick(
        session,
        settings=state.settings,
        user=user,
        comparison_id=comparison_id,
        data=data,
    )
    read = ComparisonRead.model_validate(comparison)
    await session.commit()
    return read
