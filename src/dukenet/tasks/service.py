"""The task lifecycle: create (route, price, escrow), claim with a lease, heartbeat, submit a
result once, release or expire, settle. Every function flushes; the caller commits, so a state
change and its ledger entries land together or not at all."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.agents.models import Agent, AgentKind
from dukenet.comparisons import hooks as comparison_hooks
from dukenet.config import Settings
from dukenet.errors import BadRequest, Conflict, Forbidden, NotFound
from dukenet.feedback import evaluation as evaluation_service
from dukenet.feedback import labels
from dukenet.feedback.evaluators import Verdict
from dukenet.files import service as files_service
from dukenet.gateway import spend
from dukenet.gateway import webhooks as _webhooks  # noqa: F401  (the outbox hook on Task)
from dukenet.kit.orm import utcnow
from dukenet.learning import service as learning_service
from dukenet.learning.models import LabelSource
from dukenet.learning.serving import ChampionCache
from dukenet.market import failover, routing
from dukenet.market import service as market_service
from dukenet.tasks import quotes, repository
from dukenet.tasks.models import FINAL_STATUSES, Task, TaskResult, TaskStatus
from dukenet.tasks.schemas import ResultSubmit, TaskCreate, TaskQuoteRequest

EXECUTABLE_KINDS = (AgentKind.LLM, AgentKind.REPLAY, AgentKind.BUILTIN, AgentKind.LOCAL)


async def create(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    buyer: User,
    data: TaskCreate,
    api_key_id: uuid.UUID | None = None,
    sample_comparison: bool = True,
) -> tuple[Task, bool]:
    """Route, price and create a task, holding its price in escrow; return (task, created).

    A repeated ``idempotency_key`` returns the buyer's first task with ``created=False``. A
    task paid through an API key (``api_key_id``) counts against the key's spend limits.
    With ``sample_comparison`` (False for a comparison's own second task) a second agent also
    answers it when the buyer asks (``compare``) or the ``comparison_share`` draw says so.

    Raises:
        Forbidden: the caller is not a buyer or admin.
        NotFound: the pinned agent does not exist or is disabled.
        BadRequest: no agent is within ``max_price_sat``.
        PaymentRequired: the buyer's balance does not cover the price, or the price would
            take the API key past a spend limit.
        Conflict: the ``quote_id`` is used, expired, for another request, its agent disabled,
            or its agent's price went up (``tasks.quotes``).
    """
    if buyer.role not in (UserRole.BUYER, UserRole.ADMIN):
        raise Forbidden("only buyers create tasks")
    if data.idempotency_key is not None:
        existing = await repository.get_by_idempotency_key(session, buyer.id, data.idempotency_key)
        if existing is not None:
            return existing, False
    quote = None
    if data.quote_id is not None:  # a binding quote fixes the agent and caps the price
        quote = await quotes.redeem(
            session,
            buyer=buyer,
            quote_id=data.quote_id,
            description=data.description,
            complexity=data.complexity,
        )
        data = data.model_copy(update={"agent_id": quote.agent_id})
    agents = await _candidates(session, data)
    (version, router), (challenger_version, challenger) = await champion.both(
        session, challenger=settings.shadow_mode or settings.canary_share > 0
    )
    request = _routing_request(settings, data)
    cost_weight = request.cost_weight
    seed_material = f"{data.complexity}\x00{data.description}\x00{data.idempotency_key or ''}"
    receipt = routing.route(
        request,
        agents,
        router=router,
        model_version=version,
        reference_price_sat=settings.reference_price_sat,
        epsilon=settings.exploration_epsilon,
        rng=routing.make_rng(settings.routing_seed, seed_material),
        top_k=settings.exploration_top_k,
        floor=settings.exploration_floor,
        thompson=routing.exploration_from_settings(settings),
        challenger=challenger,
        challenger_version=challenger_version,
        canary_share=settings.canary_share,
    )
    if quote is not None:
        quotes.check_price(quote, receipt.price_sat)
    routing_json = receipt.as_json()
    routing_json["constraints"] = {
        "pinned": data.agent_id is not None,
        "exclude_agent_ids": sorted({str(a) for a in data.exclude_agent_ids}),
    }
    if settings.shadow_mode and challenger is not None and challenger_version is not None:
        routing_json["shadow"] = routing.shadow_decision(
            request,
            agents,
            router=challenger,
            model_version=challenger_version,
            reference_price_sat=settings.reference_price_sat,
        )
    if api_key_id is not None:
        await spend.reserve(
            session, api_key_id=api_key_id, amount_sat=receipt.price_sat, now=utcnow()
        )
    task = Task(
        id=uuid.uuid4(),
        buyer_id=buyer.id,
        description=data.description,
        complexity=data.complexity,
        max_price_sat=data.max_price_sat,
        cost_weight=cost_weight,
        idempotency_key=data.idempotency_key,
        private=data.private,
        external_id=data.external_id,
        status=TaskStatus.ASSIGNED,
        assigned_at=utcnow(),
        agent_id=receipt.agent.id,
        price_sat=receipt.price_sat,
        escrow_sat=receipt.price_sat,
        propensity=receipt.propensity,
        model_version=version,
        routing=routing_json,
        max_attempts=settings.max_attempts,
        payload=data.chat.model_dump() if data.chat is not None else None,
        api_key_id=api_key_id,
    )
    session.add(task)
    if quote is not None:
        quote.task_id = task.id
    if data.file_ids:
        # The files' rows refer to the task's: insert it first. Otherwise it goes in the same
        # flush as the escrow's rows.
        await session.flush()
        await files_service.attach_to_task(
            session, task_id=task.id, file_ids=data.file_ids, owner=buyer
        )
    await market_service.hold_escrow(
        session, task_id=task.id, buyer_id=buyer.id, amount_sat=task.escrow_sat
    )
    if data.evaluator is not None:
        await evaluation_service.attach(
            session,
            task_id=task.id,
            buyer_id=buyer.id,
            complexity=task.complexity,
            spec=data.evaluator,
        )
    if sample_comparison:
        await comparison_hooks.after_create(
            session,
            settings=settings,
            champion=champion,
            buyer=buyer,
            task=task,
            data=data,
            api_key_id=api_key_id,
        )
    return task, True


async def _candidates(session: AsyncSession, data: TaskQuoteRequest) -> Sequence[Agent]:
    if data.agent_id is not None:
        pinned = await agents_repository.get(session, data.agent_id)
        if pinned is None or not pinned.is_enabled:
            raise NotFound(f"agent {data.agent_id} not found or disabled")
        return [pinned]
    excluded = set(data.exclude_agent_ids)
    agents = [
        a
        for a in await agents_repository.list_all(session, enabled_only=True)
        if a.id not in excluded
    ]
    if not agents and excluded:
        raise BadRequest("every enabled agent is excluded")
    return agents


def _routing_request(settings: Settings, data: TaskQuoteRequest) -> routing.RoutingRequest:
    return routing.RoutingRequest(
        description=data.description,
        complexity=data.complexity,
        cost_weight=settings.default_cost_weight if data.cost_weight is None else data.cost_weight,
        max_price_sat=data.max_price_sat,
    )


async def quote(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    data: TaskQuoteRequest,
) -> routing.RoutingReceipt:
    """Return the champion's greedy choice for a task without creating anything: the agent, its
    price in satoshis, the predicted success and the next best candidates.

    A task created from the same request may still explore another agent (ε); its receipt then
    records the choice and its propensity.

    Raises:
        NotFound: the pinned agent does not exist or is disabled.
        BadRequest: every agent is excluded, or none is within ``max_price_sat``.
    """
    agents = await _candidates(session, data)
    version, router = await champion.current(session)
    return routing.route(
        _routing_request(settings, data),
        agents,
        router=router,
        model_version=version,
        reference_price_sat=settings.reference_price_sat,
        epsilon=0.0 if router is not None else 1.0,
        rng=np.random.default_rng(0),
    )


async def cancel(session: AsyncSession, *, user: User, task_id: uuid.UUID) -> Task:
    """Cancel a task that no runner has started, refunding its escrow to the buyer.

    No outcome is recorded: a cancellation says nothing about the agent.

    Raises:
        NotFound: no such task visible to the caller.
        Conflict: the task is executing or already finished.
    """
    await get_visible(session, user=user, task_id=task_id)
    task = await repository.get(session, task_id, for_update=True)
    assert task is not None
    if task.status not in (TaskStatus.CREATED, TaskStatus.ASSIGNED):
        raise Conflict(f"task {task_id} is {task.status.value}; only queued tasks can be cancelled")
    task.status = TaskStatus.CANCELLED
    task.finished_at = utcnow()
    await _refund(session, task)
    await session.flush()
    return task


async def get_visible_detail(
    session: AsyncSession, *, user: User, task_id: uuid.UUID
) -> tuple[Task, TaskResult | None, bool]:
    """Return a task its buyer (or an admin) may see, with its result (or None) and whether
    files are attached to it, read in one query.

    Raises:
        NotFound: no such task, or it belongs to another buyer (not revealed).
    """
    found = await repository.get_with_result(session, task_id)
    if found is None or (user.role is not UserRole.ADMIN and found[0].buyer_id != user.id):
        raise NotFound(f"task {task_id} not found")
    return found


async def get_visible(session: AsyncSession, *, user: User, task_id: uuid.UUID) -> Task:
    """Return a task its buyer (or an admin) may see.

    Raises:
        NotFound: no such task, or it belongs to another buyer (not revealed).
    """
    task = await repository.get(session, task_id)
    if task is None or (user.role is not UserRole.ADMIN and task.buyer_id != user.id):
        raise NotFound(f"task {task_id} not found")
    return task


async def list_visible(
    session: AsyncSession,
    *,
    user: User,
    status: TaskStatus | None,
    limit: int,
    offset: int,
    agent_id: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[Sequence[Task], int]:
    """Return a page of the caller's tasks (every task for an admin), newest first, filtered by
    status, assigned agent and creation time in ``[created_from, created_to)``.

    Raises:
        BadRequest: ``created_from`` is not before ``created_to``, or a time has no timezone.
    """
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} needs a timezone (e.g. 2026-11-23T00:00:00Z)")
    if created_from is not None and created_to is not None and created_from >= created_to:
        raise BadRequest("created_from must be before created_to")
    buyer_id = None if user.role is UserRole.ADMIN else user.id
    return await repository.list_for_buyer(
        session,
        buyer_id,
        status=status,
        limit=limit,
        offset=offset,
        agent_id=agent_id,
        created_from=created_from,
        created_to=created_to,
    )


async def claim(
    session: AsyncSession,
    *,
    agent_ids: Sequence[uuid.UUID],
    runner: str,
    lease_s: float,
    task_id: uuid.UUID | None = None,
) -> Task | None:
    """Claim the oldest assigned task of these agents (or the given ``task_id``, as a human
    operator picking from the inbox does) with a lease of ``lease_s`` seconds.

    Returns None when there is no work, or the given task is not assigned to these agents or is
    being claimed by someone else. The task becomes ``executing`` and its attempt count grows.
    """
    if not agent_ids:
        return None
    if task_id is None:
        task = await repository.next_claimable(session, agent_ids, utcnow())
    else:
        task = await repository.claimable(session, task_id, agent_ids, utcnow())
    if task is None:
        return None
    task.status = TaskStatus.EXECUTING
    task.attempts += 1
    task.lease_token = uuid.uuid4()
    task.lease_owner = runner
    task.lease_expires_at = utcnow() + timedelta(seconds=lease_s)
    await session.flush()
    return task


async def inbox(
    session: AsyncSession,
    *,
    agent_ids: Sequence[uuid.UUID],
    status: TaskStatus | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Task], int]:
    """Return a page of the work waiting for or held by these agents (``assigned`` and
    ``executing`` tasks, or one ``status``), oldest first, and the total."""
    statuses = [status] if status is not None else [TaskStatus.ASSIGNED, TaskStatus.EXECUTING]
    if not agent_ids:
        return [], 0
    return await repository.inbox(session, agent_ids, statuses=statuses, limit=limit, offset=offset)


async def leased(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    agent_ids: Sequence[uuid.UUID],
) -> Task:
    """Return the task if ``lease_token`` holds it for one of ``agent_ids``; reads only (no
    row lock, nothing written: a streamed piece's check).

    Raises:
        NotFound: no such task, or it is not assigned to one of ``agent_ids`` (not revealed).
        Conflict: the lease was lost.
    """
    return await _leased_task(session, task_id, lease_token, agent_ids, for_update=False)


async def _leased_task(
    session: AsyncSession,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    agent_ids: Sequence[uuid.UUID],
    *,
    for_update: bool = True,
) -> Task:
    task = await repository.get(session, task_id, for_update=for_update)
    if task is None or task.agent_id not in agent_ids:
        # Another operator's task answers as an unknown one: its existence is not revealed.
        raise NotFound(f"task {task_id} not found")
    if task.status is not TaskStatus.EXECUTING or task.lease_token != lease_token:
        raise Conflict(f"task {task_id} is not leased to you (status {task.status.value})")
    return task


async def heartbeat(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    agent_ids: Sequence[uuid.UUID],
    lease_s: float,
) -> Task:
    """Extend a held lease by ``lease_s`` seconds from now.

    Raises:
        NotFound: no such task, or it is not assigned to one of ``agent_ids`` (not revealed).
        Conflict: the lease was lost.
    """
    task = await _leased_task(session, task_id, lease_token, agent_ids)
    task.lease_expires_at = utcnow() + timedelta(seconds=lease_s)
    await session.flush()
    return task


async def submit_result(
    session: AsyncSession,
    *,
    settings: Settings,
    task_id: uuid.UUID,
    data: ResultSubmit,
    agent_ids: Sequence[uuid.UUID],
) -> tuple[TaskResult, bool]:
    """Record an agent's result once. Failure refunds the buyer at once; success delivers the
    task: the payment stays in escrow until the buyer accepts, rejects, or ``dispute_window_s``
    passes (a window of 0 pays the agent at once). Either way the outcome and the agent's
    reputation are updated now. Returns (result, created); a retry with the same
    ``idempotency_key`` returns the first result.

    Raises:
        NotFound: no such task, or it is not assigned to one of ``agent_ids`` (not revealed).
        Conflict: the lease was lost or the task is final, or the key was used for another task.
    """
    previous = await _previous_result(session, task_id, data.idempotency_key, agent_ids)
    if previous is not None:
        return previous, False
    try:
        task = await _leased_task(session, task_id, data.lease_token, agent_ids)
    except Conflict:
        # A retry that raced its first submission waited on the task's lock: answer it as a retry.
        previous = await _previous_result(session, task_id, data.idempotency_key, agent_ids)
        if previous is None:
            raise
        return previous, False
    assert task.agent_id is not None
    result = TaskResult(
        task_id=task.id,
        agent_id=task.agent_id,
        idempotency_key=data.idempotency_key,
        attempt=task.attempts,
        text=data.text,
        success=data.success,
        confidence=data.confidence,
        latency_ms=data.latency_ms,
        cost_usd=data.cost_usd,
        meta=data.metadata,
    )
    session.add(result)
    if data.success:
        await _deliver(session, settings, task, result)
    else:
        await _finish_failed(session, settings, task, error=None, result=result)
    return result, True


async def _previous_result(
    session: AsyncSession, task_id: uuid.UUID, key: str, agent_ids: Sequence[uuid.UUID]
) -> TaskResult | None:
    previous = await repository.get_result_by_key(session, key)
    if previous is None:
        return None
    if previous.task_id != task_id:
        raise Conflict("idempotency key already used for another task")
    if previous.agent_id not in agent_ids:
        # A replayed key must not hand the result to an operator who does not own the agent,
        # nor tell them the task exists.
        raise NotFound(f"task {task_id} not found")
    return previous


async def release(
    session: AsyncSession,
    *,
    settings: Settings,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    agent_ids: Sequence[uuid.UUID],
    error: str,
) -> Task:
    """Give a leased task back after an execution error: it is retried, or fails with a refund
    once ``max_attempts`` is reached.

    Raises:
        NotFound: no such task, or it is not assigned to one of ``agent_ids`` (not revealed).
        Conflict: the lease was lost.
    """
    task = await _leased_task(session, task_id, lease_token, agent_ids)
    await _requeue_or_fail(session, settings, task, error=error)
    return task


async def expire_leases(session: AsyncSession, *, settings: Settings) -> int:
    """Return expired leases to the queue (or fail them after ``max_attempts``); return how many."""
    tasks = await repository.expired_leases(session, utcnow())
    for task in tasks:
        await _requeue_or_fail(session, settings, task, error="lease expired")
    return len(tasks)


async def _requeue_or_fail(
    session: AsyncSession, settings: Settings, task: Task, *, error: str
) -> None:
    assert task.agent_id is not None
    routing_json = dict(task.routing)
    routing_json["failures"] = [
        *routing_json.get("failures", []),
        {"agent_id": str(task.agent_id), "attempt": task.attempts, "error": error[:500]},
    ]
    task.routing = routing_json
    _close_lease(task)
    task.error = error
    if task.attempts >= task.max_attempts:
        await _finish_failed(
            session, settings, task, error=f"{error} (after {task.attempts} attempts)", result=None
        )
        return
    task.status = TaskStatus.ASSIGNED
    task.available_at = utcnow() + timedelta(seconds=retry_backoff_s(settings, task.attempts))
    task.assigned_at = task.available_at
    await _fail_over(session, settings, task)
    await session.flush()


def retry_backoff_s(settings: Settings, attempts: int) -> float:
    """Seconds a task waits before its next attempt after ``attempts`` failed ones: exponential,
    ``retry_backoff_s × 2^(attempts − 1)``, at most ``retry_backoff_max_s``."""
    if attempts < 1 or settings.retry_backoff_s <= 0:
        return 0.0
    return float(min(settings.retry_backoff_s * 2 ** (attempts - 1), settings.retry_backoff_max_s))


async def _fail_over(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    *,
    tried: set[uuid.UUID] | None = None,
    reason: str = "execution failed",
) -> None:
    """Move a task whose agent could not execute it to the best untried agent within the
    buyer's budget (``market.failover``); keep it where it is if none qualifies. An agent the
    task failed with, or was moved away from for any reason, is never offered it again, so a
    task no agent claims does not bounce between them until its claim deadline."""
    constraints = task.routing.get("constraints", {})
    if constraints.get("pinned", False):
        return
    tried = (
        set(tried or ())
        | {uuid.UUID(f["agent_id"]) for f in task.routing.get("failures", [])}
        | {uuid.UUID(f["from_agent_id"]) for f in task.routing.get("failovers", [])}
    )
    excluded = {uuid.UUID(a) for a in constraints.get("exclude_agent_ids", [])}
    budget = task.escrow_sat
    if task.max_price_sat is not None:
        budget = min(budget, task.max_price_sat)
    choice = failover.choose_failover(
        await agents_repository.list_all(session, enabled_only=True),
        candidates=task.routing.get("candidates", []),
        tried=tried,
        excluded=excluded,
        complexity=task.complexity,
        value_sat=routing.value_sat(
            settings.reference_price_sat, task.complexity, task.cost_weight
        ),
        budget_sat=budget,
    )
    if choice is None:
        return
    routing_json = dict(task.routing)
    routing_json["failovers"] = [
        *routing_json.get("failovers", []),
        {
            "attempt": task.attempts,
            "from_agent_id": str(task.agent_id),
            "to_agent_id": str(choice.agent.id),
            "to_agent_name": choice.agent.name,
            "price_sat": choice.price_sat,
            "reason": reason,
        },
    ]
    task.routing = routing_json
    task.agent_id = choice.agent.id
    task.price_sat = choice.price_sat
    task.assigned_at = max(utcnow(), task.available_at or utcnow())


async def reassign_queued(
    session: AsyncSession, *, settings: Settings, agent_id: uuid.UUID
) -> tuple[int, int]:
    """Move the tasks queued for an agent leaving the market (disabled) to the best other agent
    within each buyer's budget (``market.failover``); refund those that cannot move (pinned to
    it, or no other agent qualifies): they fail with the reason, and no outcome is recorded (the
    agent did not fail them). Tasks being executed finish where they are. Returns (moved,
    refunded).
    """
    moved = refunded = 0
    for task in await repository.queued_for_agent(session, agent_id):
        await _fail_over(session, settings, task, tried={agent_id}, reason="agent disabled")
        if task.agent_id != agent_id:
            moved += 1
            continue
        task.status = TaskStatus.FAILED
        task.error = "the agent was taken off the market before it started the task"
        task.finished_at = utcnow()
        await _refund(session, task)
        refunded += 1
    await session.flush()
    return moved, refunded


async def reassign_unclaimed(session: AsyncSession, *, settings: Settings) -> int:
    """Offer tasks nobody claimed within ``claim_timeout_s`` of becoming claimable (an offline
    runner, an absent human) to the best other agent within budget (``market.failover``); a task
    pinned to its agent, or with nobody else within budget, keeps waiting for another timeout
    until its claim deadline (``expire_unclaimed``). Returns how many moved. No attempt and no
    outcome is counted: the agent never started.
    """
    if settings.claim_timeout_s <= 0:
        return 0
    now = utcnow()
    moved = 0
    for task in await repository.unclaimed_since(
        session, now - timedelta(seconds=settings.claim_timeout_s)
    ):
        assert task.agent_id is not None
        before = task.agent_id
        await _fail_over(session, settings, task, tried={before}, reason="not claimed in time")
        moved += task.agent_id != before
        task.assigned_at = now
    await session.flush()
    return moved


async def expire_unclaimed(session: AsyncSession, *, settings: Settings) -> int:
    """Fail the tasks still unclaimed ``claim_deadline_s`` after they became claimable (created,
    or back from the backoff of their last attempt), refunding the whole escrow: a task pinned
    to an absent agent, or offered in turn to agents none of whom claimed it, stops holding the
    buyer's money. Returns how many were refunded.

    No outcome is recorded and no reputation changes: nobody is working on the task (an earlier
    attempt that expired or was released recorded none either). Rows are locked with SKIP LOCKED
    and the refund carries the task's settlement key, so sweepers racing each other (or a claim,
    or a cancellation) refund a task at most once.
    """
    if settings.claim_deadline_s <= 0:
        return 0
    now = utcnow()
    error = f"not claimed within the claim deadline ({settings.claim_deadline_s:.15g} s); refunded"
    tasks = await repository.unclaimed_before(
        session, now - timedelta(seconds=settings.claim_deadline_s)
    )
    for task in tasks:
        task.status = TaskStatus.FAILED
        task.error = error
        task.finished_at = now
        await _refund(session, task)
    await session.flush()
    return len(tasks)


def _close_lease(task: Task) -> None:
    task.lease_token = None
    task.lease_owner = None
    task.lease_expires_at = None


async def _deliver(
    session: AsyncSession, settings: Settings, task: Task, result: TaskResult
) -> None:
    """The agent reported success: record the outcome now; pay at once when there is no dispute
    window or the buyer accepted in advance (a chat request's ``accept_on_delivery``, the
    gateway's default), else hold the escrow until the buyer accepts or the window ends."""
    _ensure_undelivered(task)
    now = utcnow()
    _close_lease(task)
    task.error = None
    task.delivered_at = now
    verdict = await evaluation_service.check_delivery(session, task.id, result.text)
    await _record_outcome(session, settings, task, success=True, result=result, verdict=verdict)
    # a side of a comparison paying the winner only waits for the pick (comparisons.hooks)
    held = await comparison_hooks.on_delivered(session, task)
    if held:
        task.status = TaskStatus.DELIVERED
    elif settings.dispute_window_s <= 0 or (task.payload or {}).get("accept_on_delivery"):
        await _complete(session, settings, task)
    else:
        task.status = TaskStatus.DELIVERED
        task.accept_by = now + timedelta(seconds=settings.dispute_window_s)
    await session.flush()


async def _finish_failed(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    *,
    error: str | None,
    result: TaskResult | None,
) -> None:
    _ensure_undelivered(task)
    _close_lease(task)
    task.status = TaskStatus.FAILED
    task.finished_at = utcnow()
    task.error = error
    await _refund(session, task)
    await _record_outcome(session, settings, task, success=False, result=result)
    await session.flush()


def _ensure_undelivered(task: Task) -> None:
    """A result is recorded once: refuse a task already delivered or final."""
    if task.status in FINAL_STATUSES or task.status is TaskStatus.DELIVERED:
        raise Conflict(f"task {task.id} is already {task.status.value}")


async def _complete(session: AsyncSession, settings: Settings, task: Task) -> None:
    """Pay the agent from escrow (the rest back to the buyer) and mark the task completed."""
    await _pay_agent(session, settings, task)
    task.status = TaskStatus.COMPLETED
    task.finished_at = utcnow()


async def _pay_agent(session: AsyncSession, settings: Settings, task: Task) -> None:
    assert task.agent_id is not None
    await market_service.release_escrow(
        session,
        task_id=task.id,
        agent_id=task.agent_id,
        amount_sat=task.price_sat,
        fee_bps=settings.platform_fee_bps,
        escrow_sat=task.escrow_sat,
        buyer_id=task.buyer_id,
    )


async def _refund(session: AsyncSession, task: Task) -> None:
    await market_service.refund_escrow(
        session, task_id=task.id, buyer_id=task.buyer_id, amount_sat=task.escrow_sat
    )
    await comparison_hooks.on_refund(session, task)  # no pick without both answers


async def _record_outcome(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    *,
    success: bool,
    result: TaskResult | None,
    verdict: Verdict | None = None,
) -> None:
    """Write the task's outcome labelled by the agent's report (``feedback.labels``), then by
    the reference check's ``verdict`` when there is one, and recompute the agent's reputation."""
    assert task.agent_id is not None
    quality, confidence = labels.agent_label(
        success, result.confidence if result is not None else None
    )
    outcome = await learning_service.record_outcome(
        session,
        task_id=task.id,
        agent_id=task.agent_id,
        description=task.description,
        complexity=task.complexity,
        success=success,
        price_sat=task.price_sat,
        propensity=task.propensity if task.propensity is not None else 1.0,
        model_version=task.model_version,
        routing=task.routing,
        cost_usd=result.cost_usd if result is not None else None,
        latency_ms=result.latency_ms if result is not None else None,
        quality=quality,
        label_source=LabelSource.AGENT,
        label_confidence=confidence,
    )
    labels.record_initial(
        session, outcome, kind="report", detail={"error": task.error} if task.error else None
    )
    if verdict is not None:
        await labels.apply(
            session,
            task_id=task.id,
            source=LabelSource.EVALUATOR,
            kind=verdict.kind,
            quality=verdict.quality,
            confidence=labels.REFERENCE_CONFIDENCE,
            success_threshold=settings.success_threshold,
            detail=verdict.detail,
        )
    await update_agent_reputation(session, settings, task.agent_id, count_finished=True)


async def update_agent_reputation(
    session: AsyncSession, settings: Settings, agent_id: uuid.UUID, *, count_finished: bool
) -> None:
    """Recompute one agent's reputation from its recent outcomes (``market.service``), locking
    its row; ``count_finished`` adds one finished task (False when a counted outcome changed: a
    rejected delivery, a buyer's rating)."""
    agent = await agents_repository.get(session, agent_id, for_update=True)
    assert agent is not None
    await market_service.update_reputation(
        session,
        agent,
        window=settings.reputation_window,
        prior_successes=settings.reputation_prior_successes,
        prior_failures=settings.reputation_prior_failures,
        success_threshold=settings.success_threshold,
        count_finished=count_finished,
        per_buyer_cap=settings.reputation_per_buyer_cap,
        pinned_weight=settings.reputation_pinned_weight,
    )


async def accept(
    session: AsyncSession, *, settings: Settings, user: User, task_id: uuid.UUID
) -> tuple[Task, bool]:
    """The buyer accepts a delivered result: the escrow pays the agent and the outcome gets the
    buyer's label (quality 1). Returns (task, changed);
    accepting a task already completed changes nothing (a double accept pays once).

    Raises:
        NotFound: no such task visible to the caller.
        Conflict: the task is not delivered (still running, failed, cancelled or rejected).
    """
    await get_visible(session, user=user, task_id=task_id)
    task = await repository.get(session, task_id, for_update=True)
    assert task is not None
    if task.status is TaskStatus.COMPLETED:
        return task, False
    if task.status is not TaskStatus.DELIVERED:
        raise Conflict(f"task {task_id} is {task.status.value}; only a delivered task is accepted")
    await comparison_hooks.check_accept(session, task)
    await _complete(session, settings, task)
    await _buyer_label(session, settings, task, user=user, kind="accept", quality=1.0)
    await session.flush()
    return task, True


async def _buyer_label(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    *,
    user: User,
    kind: str,
    quality: float,
    detail: dict[str, str] | None = None,
) -> None:
    """Label the task's outcome with the buyer's verdict and recompute the agent's reputation
    if its quality moved (the outcome is counted once, whatever its label)."""
    assert task.agent_id is not None
    change = await labels.apply(
        session,
        task_id=task.id,
        source=LabelSource.BUYER,
        kind=kind,
        quality=quality,
        confidence=labels.BUYER_CONFIDENCE,
        success_threshold=settings.success_threshold,
        detail=detail,
        actor_id=user.id,
    )
    if change.quality_changed:
        await update_agent_reputation(session, settings, task.agent_id, count_finished=False)


async def reject(
    session: AsyncSession,
    *,
    settings: Settings,
    user: User,
    task_id: uuid.UUID,
    reason: str,
) -> tuple[Task, bool]:
    """The buyer rejects a delivered result within the dispute window: the escrow is refunded,
    the outcome becomes a failure (quality 0) and the agent's reputation is recomputed.
    Returns (task, changed); rejecting an already rejected task changes nothing.

    Raises:
        NotFound: no such task visible to the caller.
        Conflict: the task is not delivered, or its dispute window has closed.
    """
    await get_visible(session, user=user, task_id=task_id)
    task = await repository.get(session, task_id, for_update=True)
    assert task is not None and task.agent_id is not None
    if task.status is TaskStatus.REJECTED:
        return task, False
    if task.status is not TaskStatus.DELIVERED:
        raise Conflict(f"task {task_id} is {task.status.value}; only a delivered task is rejected")
    now = utcnow()
    if task.accept_by is not None and now > task.accept_by:
        raise Conflict(f"the dispute window of task {task_id} closed at {task.accept_by}")
    await _refund(session, task)
    task.status = TaskStatus.REJECTED
    task.rejection_reason = reason
    task.finished_at = now
    await _buyer_label(
        session, settings, task, user=user, kind="reject", quality=0.0, detail={"reason": reason}
    )
    await session.flush()
    return task, True


async def settle_due(session: AsyncSession, *, settings: Settings) -> int:
    """Pay the agents of delivered tasks whose dispute window has passed (the buyer neither
    accepted nor rejected), and settle the comparisons nobody picked in time
    (``comparisons.hooks.settle_lapsed``); return how many were settled."""
    tasks = await repository.due_for_settlement(session, utcnow())
    for task in tasks:
        await _complete(session, settings, task)
    lapsed = await comparison_hooks.settle_lapsed(session, settings)  # unpicked comparisons
    await session.flush()
    return len(tasks) + lapsed


async def executable_agents(
    session: AsyncSession, *, kinds: Sequence[AgentKind] = EXECUTABLE_KINDS
) -> Sequence[Agent]:
    """Return enabled agents an automatic runner can execute."""
    return await agents_repository.list_all(session, enabled_only=True, kinds=kinds)


async def get_result(session: AsyncSession, task_id: uuid.UUID) -> TaskResult | None:
    """Return the result an agent submitted for a task, or None (check visibility first)."""
    return await repository.get_result(session, task_id)
