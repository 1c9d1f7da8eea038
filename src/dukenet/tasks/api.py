"""Task endpoints for buyers, and the runner protocol (claim, heartbeat, result, release)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.agents.models import AgentKind
from dukenet.agents.schemas import AgentDetail
from dukenet.deps import CurrentApiKeyId, CurrentUser, OperatorUser, Session, State
from dukenet.errors import Forbidden
from dukenet.events.stream import Delta
from dukenet.files import service as files_service
from dukenet.kit.openapi import error_responses
from dukenet.kit.schema import Page
from dukenet.ledger import repository as ledger_repository
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerTransaction
from dukenet.ledger.schemas import EntryRead, TransactionRead
from dukenet.tasks import quotes, repository, service
from dukenet.tasks.models import Task, TaskResult, TaskStatus
from dukenet.tasks.schemas import (
    ClaimRead,
    ClaimRequest,
    InboxItem,
    QuoteRead,
    RejectRequest,
    ResultRead,
    ResultSubmit,
    StreamAck,
    StreamPiece,
    TaskCreate,
    TaskDetail,
    TaskQuoteRequest,
    TaskRead,
)

router = APIRouter(tags=["tasks"])
runner_router = APIRouter(prefix="/runner", tags=["runner"])


async def _detail(
    session: AsyncSession,
    task: Task,
    *,
    result: TaskResult | None,
    has_files: bool,
    written: bool = False,
) -> TaskDetail:
    """The task's detail: one query for its ledger transactions (none when this session
    ``written`` all of them: a task it created), one more for its files if it ``has_files``."""
    rows: list[tuple[LedgerTransaction, list[tuple[str, int]]]] = []
    if written:
        rows = [
            (txn, [(leg.account, leg.amount_sat) for leg in legs])
            for txn, legs in ledger_service.written(session, task.id)
        ]
    else:
        for txn, entry, account_name in await ledger_repository.transactions_for_task(
            session, task.id
        ):
            if not rows or rows[-1][0].id != txn.id:
                rows.append((txn, []))
            rows[-1][1].append((account_name, entry.amount_sat))
    transactions = [
        TransactionRead(
            id=txn.id,
            kind=txn.kind,
            task_id=txn.task_id,
            memo=txn.memo,
            created_at=txn.created_at,
            entries=[EntryRead(account_name=name, amount_sat=amount) for name, amount in entries],
        )
        for txn, entries in rows
    ]
    return TaskDetail(
        **TaskRead.model_validate(task).model_dump(),
        routing=task.routing,
        chat=task.payload,
        file_ids=(
            [f.id for f in await files_service.list_for_task(session, task.id)] if has_files else []
        ),
        result=ResultRead.model_validate(result) if result is not None else None,
        transactions=transactions,
    )


@router.post(
    "/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskDetail,
    responses={
        **error_responses(400, 402, 404),
        200: {"model": TaskDetail, "description": "A retry: the task first created with this key"},
    },
)
async def create_task(
    data: TaskCreate,
    user: CurrentUser,
    api_key_id: CurrentApiKeyId,
    session: Session,
    state: State,
    response: Response,
) -> TaskDetail:
    """Submit a task: Duke routes it, the price is held in escrow, the task is assigned.

    A retried request with the same ``idempotency_key`` returns the first task (200). A task
    submitted with an API key counts against the key's spend limits (402 past one).
    """
    started = time.perf_counter()
    task, created = await service.create(
        session,
        settings=state.settings,
        champion=state.champion,
        buyer=user,
        data=data,
        api_key_id=api_key_id,
    )
    # Read back inside the write transaction (no second one); a new task has no result yet.
    detail = await _detail(
        session,
        task,
        result=None if created else await repository.get_result(session, task.id),
        has_files=bool(data.file_ids) or not created,
        written=created,
    )
    await session.commit()
    if created:
        state.bell.new_work()  # an idle embedded runner claims it now, not at its next poll
        state.metrics.routing_seconds.observe(time.perf_counter() - started)
        state.metrics.task_transitions.labels(TaskStatus.ASSIGNED.value).inc()
    else:
        response.status_code = status.HTTP_200_OK
    return detail


@router.post("/tasks/quote", response_model=QuoteRead, responses=error_responses(400, 404))
async def quote_task(
    data: TaskQuoteRequest, user: CurrentUser, session: Session, state: State
) -> QuoteRead:
    """Quote before you buy: the agent Duke would choose, the price and the alternatives. The
    quote binds: ``POST /tasks`` with its ``quote_id`` before ``expires_at`` gets this agent at
    no more than this price, or 409."""
    receipt = await service.quote(
        session, settings=state.settings, champion=state.champion, data=data
    )
    chosen = next(c for c in receipt.candidates if c["agent_id"] == str(receipt.agent.id))
    binding = await quotes.issue(
        session,
        buyer=user,
        agent=receipt.agent,
        price_sat=receipt.price_sat,
        description=data.description,
        complexity=data.complexity,
        ttl_s=state.settings.quote_ttl_s,
    )
    await session.commit()
    return QuoteRead(
        quote_id=binding.id,
        expires_at=binding.expires_at,
        agent_id=receipt.agent.id,
        agent_name=receipt.agent.name,
        price_sat=receipt.price_sat,
        p_success=chosen["p_success"],
        model_version=receipt.model_version,
        eligible_agents=receipt.n_eligible,
        alternatives=[c for c in receipt.candidates if c is not chosen],
    )


@router.post("/tasks/{task_id}/cancel", response_model=TaskRead)
async def cancel_task(
    task_id: uuid.UUID, user: CurrentUser, session: Session, state: State
) -> TaskRead:
    """Cancel a task no runner has started; its price returns to the buyer's wallet."""
    task = await service.cancel(session, user=user, task_id=task_id)
    await session.commit()
    state.metrics.task_transitions.labels(TaskStatus.CANCELLED.value).inc()
    state.metrics.settled_sat.labels("refund").inc(task.escrow_sat)
    return TaskRead.model_validate(task)


@router.post("/tasks/{task_id}/accept", response_model=TaskRead)
async def accept_task(
    task_id: uuid.UUID, user: CurrentUser, session: Session, state: State
) -> TaskRead:
    """Accept a delivered result: the escrow pays the agent. Accepting twice pays once."""
    task, changed = await service.accept(
        session, settings=state.settings, user=user, task_id=task_id
    )
    await session.commit()
    if changed:
        state.metrics.task_transitions.labels(TaskStatus.COMPLETED.value).inc()
        state.metrics.settled_sat.labels("release").inc(task.price_sat)
    return TaskRead.model_validate(task)


@router.post("/tasks/{task_id}/reject", response_model=TaskRead)
async def reject_task(
    task_id: uuid.UUID, data: RejectRequest, user: CurrentUser, session: Session, state: State
) -> TaskRead:
    """Reject a delivered result within the dispute window: the buyer is refunded and the
    outcome counts as the agent's failure. Rejecting twice refunds once."""
    task, changed = await service.reject(
        session, settings=state.settings, user=user, task_id=task_id, reason=data.reason
    )
    await session.commit()
    if changed:
        state.metrics.task_transitions.labels(TaskStatus.REJECTED.value).inc()
        state.metrics.settled_sat.labels("refund").inc(task.escrow_sat)
    return TaskRead.model_validate(task)


@router.get("/tasks", response_model=Page[TaskRead], responses=error_responses(400))
async def list_tasks(
    user: CurrentUser,
    session: Session,
    status_filter: TaskStatus | None = Query(default=None, alias="status"),
    agent_id: uuid.UUID | None = None,
    created_from: datetime | None = Query(
        default=None, description="Created at or after this time (ISO 8601 with a timezone)."
    ),
    created_to: datetime | None = Query(
        default=None, description="Created before this time (ISO 8601 with a timezone)."
    ),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[TaskRead]:
    """List the caller's tasks, newest first (admins: every task), filtered by status, agent
    and creation time."""
    items, total = await service.list_visible(
        session,
        user=user,
        status=status_filter,
        limit=limit,
        offset=offset,
        agent_id=agent_id,
        created_from=created_from,
        created_to=created_to,
    )
    return Page[TaskRead](
        items=[TaskRead.model_validate(t) for t in items], total=total, limit=limit, offset=offset
    )


@router.get("/tasks/{task_id}", response_model=TaskDetail)
async def get_task(task_id: uuid.UUID, user: CurrentUser, session: Session) -> TaskDetail:
    """Show one of the caller's tasks with its routing receipt, result and ledger entries."""
    task, result, has_files = await service.get_visible_detail(session, user=user, task_id=task_id)
    return await _detail(session, task, result=result, has_files=has_files)


async def _agent_ids(
    session: AsyncSession,
    user: User,
    agent_id: uuid.UUID | None,
    *,
    enabled_only: bool = True,
    kinds: Sequence[AgentKind] | None = None,
) -> Sequence[uuid.UUID]:
    """The agents the caller acts for (an admin: all), of ``kinds`` if given. New work (claim,
    inbox) goes to enabled agents only; a task already leased is finished
    (``enabled_only=False``) even if its agent was disabled meanwhile."""
    owner = None if user.role is UserRole.ADMIN else user.id
    agents = await agents_repository.list_all(
        session, enabled_only=enabled_only, owner_id=owner, kinds=kinds
    )
    ids = [a.id for a in agents]
    if agent_id is not None:
        if agent_id not in ids:
            raise Forbidden(f"agent {agent_id} is not yours or is disabled")
        return [agent_id]
    return ids


@runner_router.get("/agents", response_model=list[AgentDetail])
async def runner_agents(user: OperatorUser, session: Session) -> list[AgentDetail]:
    """List the enabled agents you act for (an admin: all), with their configuration (stored
    API keys redacted): what a remote runner checks it can execute before claiming."""
    owner = None if user.role is UserRole.ADMIN else user.id
    agents = await agents_repository.list_all(session, enabled_only=True, owner_id=owner)
    return [AgentDetail.model_validate(a) for a in agents]


@runner_router.get("/inbox", response_model=Page[InboxItem])
async def inbox(
    user: OperatorUser,
    session: Session,
    agent_id: uuid.UUID | None = None,
    status_filter: TaskStatus | None = Query(default=None, alias="status"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[InboxItem]:
    """The work of your agents (a human agent's to-do list): tasks assigned to them and waiting
    for a claim, and those being executed, oldest first."""
    ids = await _agent_ids(session, user, agent_id)
    items, total = await service.inbox(
        session, agent_ids=ids, status=status_filter, limit=limit, offset=offset
    )
    return Page[InboxItem](
        items=[InboxItem.model_validate(t) for t in items], total=total, limit=limit, offset=offset
    )


@runner_router.post("/claim", response_model=ClaimRead | None)
async def claim(
    data: ClaimRequest, user: OperatorUser, session: Session, state: State
) -> ClaimRead | None:
    """Claim the oldest task assigned to one of your agents (or ``task_id`` from your inbox),
    with a lease; null if there is none (or the task was claimed first by someone else).
    ``agent_ids`` / ``kinds`` name what the runner can execute: only those tasks are handed out."""
    ids = await _agent_ids(session, user, data.agent_id, kinds=data.kinds)
    if data.agent_ids is not None:
        wanted = set(data.agent_ids)
        ids = [i for i in ids if i in wanted]
    task = await service.claim(
        session,
        agent_ids=ids,
        runner=data.runner,
        lease_s=state.settings.lease_s,
        task_id=data.task_id,
    )
    await session.commit()
    if task is None:
        return None
    state.metrics.task_transitions.labels(TaskStatus.EXECUTING.value).inc()
    assert task.agent_id and task.lease_token and task.lease_expires_at
    return ClaimRead(
        task_id=task.id,
        agent_id=task.agent_id,
        lease_token=task.lease_token,
        lease_expires_at=task.lease_expires_at,
        attempt=task.attempts,
        description=task.description,
        complexity=task.complexity,
        external_id=task.external_id,
        chat=task.payload,
        file_ids=[f.id for f in await files_service.list_for_task(session, task.id)],
        context=await files_service.task_context(
            session,
            state.storage,
            task_id=task.id,
            budget_chars=state.settings.file_context_chars,
        ),
    )


@runner_router.post("/tasks/{task_id}/heartbeat", response_model=TaskRead)
async def heartbeat(
    task_id: uuid.UUID, lease_token: uuid.UUID, user: OperatorUser, session: Session, state: State
) -> TaskRead:
    """Extend the lease on a task you hold."""
    ids = await _agent_ids(session, user, None, enabled_only=False)
    task = await service.heartbeat(
        session,
        task_id=task_id,
        lease_token=lease_token,
        agent_ids=ids,
        lease_s=state.settings.lease_s,
    )
    await session.commit()
    return TaskRead.model_validate(task)


@runner_router.post("/tasks/{task_id}/stream", response_model=StreamAck)
async def relay_stream(
    task_id: uuid.UUID, data: StreamPiece, user: OperatorUser, session: Session, state: State
) -> StreamAck:
    """Relay a piece of the answer of a task you hold while its agent streams it, to the
    buyer's streaming ``/v1`` call; a piece sent again (same ``offset``) is kept once. Nothing
    is stored: the result you submit is the answer."""
    ids = await _agent_ids(session, user, None, enabled_only=False)
    task = await service.leased(
        session, task_id=task_id, lease_token=data.lease_token, agent_ids=ids
    )
    attempt = task.attempts
    await session.commit()
    accepted = state.relay.publish(task_id, Delta(attempt, data.offset, data.text))
    return StreamAck(accepted=accepted)


@runner_router.post("/tasks/{task_id}/result", response_model=ResultRead)
async def submit_result(
    task_id: uuid.UUID,
    data: ResultSubmit,
    user: OperatorUser,
    session: Session,
    state: State,
    response: Response,
) -> ResultRead:
    """Submit the result of a task you hold: a failure refunds the buyer, a success is delivered
    for the buyer to accept (paid at once without a dispute window). Retries with the same key
    are safe."""
    ids = await _agent_ids(session, user, None, enabled_only=False)
    result, created = await service.submit_result(
        session, settings=state.settings, task_id=task_id, data=data, agent_ids=ids
    )
    await session.commit()
    if created:
        state.bell.changed(task_id)  # a gateway call waiting here answers now, not at its poll
        task = await repository.get(session, task_id)
        if task is not None:
            state.metrics.task_transitions.labels(task.status.value).inc()
            if task.status is TaskStatus.COMPLETED:
                state.metrics.settled_sat.labels("release").inc(task.price_sat)
            elif task.status is TaskStatus.FAILED:
                state.metrics.settled_sat.labels("refund").inc(task.escrow_sat)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ResultRead.model_validate(result)


@runner_router.post("/tasks/{task_id}/release", response_model=TaskRead)
async def release(
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    user: OperatorUser,
    session: Session,
    state: State,
    error: str = Query(default="released by runner", max_length=2000),
) -> TaskRead:
    """Give a task back after an execution error; it is retried or fails with a refund."""
    ids = await _agent_ids(session, user, None, enabled_only=False)
    task = await service.release(
        session,
        settings=state.settings,
        task_id=task_id,
        lease_token=lease_token,
        agent_ids=ids,
        error=error,
    )
    await session.commit()
    state.bell.changed(task_id)
    state.bell.new_work()  # the task may be claimable again
    return TaskRead.model_validate(task)
