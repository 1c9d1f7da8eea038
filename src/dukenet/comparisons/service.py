"""Pairwise comparisons: a second agent answers a buyer's task, and one pick yields a
preference pair, a router label and a reputation signal.

A comparison links the buyer's task (routed by Duke as usual) and a sibling task created
through ``tasks.service.create`` with the first agent excluded: Duke routes it among the other
agents, so its receipt holds its own candidates and the propensity of its own choice
(off-policy estimates stay exact), or it is pinned to the agent the buyer named. A buyer asks
for one per task (``compare: true`` at creation, or ``POST /tasks/{id}/compare``); a share of
the other tasks (``comparison_share``) is drawn at random, and every task's receipt records
the draw and its probability under ``routing["comparison"]``.

Each side holds its own price in escrow, which covers what the buyer may owe. ``both``: each
task settles as a plain task (accept, reject, dispute window). ``winner``: both answers wait
unpaid for the pick (``comparisons.hooks``), and the pick pays the winner and refunds the loser,
each in a ledger transaction of its own task, in one commit (``comparisons.settlement``).

The pick (the buyer, or an admin as a curator) labels the winner a success (``pairwise_win``,
the picker's source) and recomputes its agent's reputation. The loser's label is left as it
was unless the picker says it failed (``loser_failed``): preferring one answer does not make
the other wrong, so the preference itself is recorded (this row), and exported as a DPO pair
(``comparisons.exports``) and as the router label of both tasks (the winner's agent).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.comparisons import repository, settlement
from dukenet.comparisons.models import (
    Comparison,
    ComparisonOrigin,
    ComparisonPayment,
    ComparisonStatus,
)
from dukenet.comparisons.schemas import CompareRequest, PickRequest
from dukenet.config import Settings
from dukenet.errors import BadRequest, Conflict, DukenetError, NotFound
from dukenet.feedback import evaluation as evaluation_service
from dukenet.feedback import evaluators, labels
from dukenet.files import service as files_service
from dukenet.kit.orm import utcnow
from dukenet.learning.models import LabelSource
from dukenet.learning.serving import ChampionCache
from dukenet.market import routing
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import FINAL_STATUSES, Task, TaskStatus
from dukenet.tasks.schemas import ChatPayload, TaskCreate

PICKABLE = frozenset({TaskStatus.DELIVERED, TaskStatus.COMPLETED})


def _record_draw(task: Task, draw: dict[str, object]) -> None:
    task.routing = {**task.routing, "comparison": draw}


async def after_create(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    buyer: User,
    task: Task,
    data: TaskCreate,
    api_key_id: uuid.UUID | None,
) -> Comparison | None:
    """Open a comparison for a new task when the buyer asked (``data.compare``) or the
    ``comparison_share`` draw says so, recording the draw in the task's receipt
    (``{"requested", "share", "probability", "compared"}``: ``probability`` is the chance the
    task was compared). A drawn comparison that cannot be made (no second agent within budget,
    not enough balance) is skipped and the reason recorded; an asked-for one raises.

    A conversation the buyer accepts in advance (``accept_on_delivery``) is never drawn: no
    pick would come.

    Raises:
        BadRequest, PaymentRequired, NotFound: as ``open_for`` when the buyer asked.
    """
    open_it = functools.partial(
        open_for,
        session,
        settings=settings,
        champion=champion,
        buyer=buyer,
        task=task,
        payment=ComparisonPayment(data.compare_payment or settings.comparison_payment),
        api_key_id=api_key_id,
    )
    if data.compare:
        _record_draw(task, {"requested": True, "probability": 1.0, "compared": True})
        return await open_it(origin=ComparisonOrigin.BUYER, probability=1.0)
    share = settings.comparison_share
    if share <= 0 or (data.chat is not None and data.chat.accept_on_delivery):
        return None
    # reproducible under a fixed routing_seed, as the routing decision itself
    seed = f"compare\x00{data.complexity}\x00{data.description}\x00{data.idempotency_key or ''}"
    drawn = bool(routing.make_rng(settings.routing_seed, seed).random() < share)
    draw: dict[str, object] = {
        "requested": False,
        "share": share,
        "probability": share,
        "compared": drawn,
    }
    _record_draw(task, draw)
    comparison = None
    if drawn:
        try:
            async with session.begin_nested():
                comparison = await open_it(origin=ComparisonOrigin.SHARE, probability=share)
        except DukenetError as exc:
            await session.refresh(task)  # the savepoint's rollback expired what it changed
            _record_draw(task, {**draw, "compared": False, "skipped": exc.message})
    await session.flush()
    return comparison


async def request(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    user: User,
    task_id: uuid.UUID,
    data: CompareRequest,
) -> tuple[Comparison, bool]:
    """Have a second agent answer one of the caller's tasks; return (comparison, created). A
    repeat returns the task's comparison with ``created=False``.

    Raises:
        NotFound: no such task visible to the caller, or no such agent.
        Conflict: the task is itself a second answer, or is already finished (or settled).
        BadRequest: ``agent_id`` is the task's own agent, or no other agent is within budget.
        PaymentRequired: the buyer's balance does not cover the second agent's price.
    """
    task = await tasks_service.get_visible(session, user=user, task_id=task_id)
    existing = await repository.get_for_task(session, task.id)
    if existing is not None:
        if existing.sibling_task_id == task.id:
            raise Conflict(f"task {task_id} is the second answer of comparison {existing.id}")
        return existing, False
    if task.status in FINAL_STATUSES:
        raise Conflict(f"task {task_id} is {task.status.value}; it can no longer be compared")
    buyer = user if user.id == task.buyer_id else None
    if buyer is None:
        raise NotFound(f"task {task_id} not found")  # an admin compares no one else's task
    _record_draw(task, {"requested": True, "probability": 1.0, "compared": True})
    comparison = await open_for(
        session,
        settings=settings,
        champion=champion,
        buyer=buyer,
        task=task,
        payment=ComparisonPayment(data.payment or settings.comparison_payment),
        origin=ComparisonOrigin.BUYER,
        probability=1.0,
        api_key_id=task.api_key_id,
        agent_id=data.agent_id,
    )
    return comparison, True


async def open_for(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    buyer: User,
    task: Task,
    payment: ComparisonPayment,
    origin: ComparisonOrigin,
    probability: float,
    api_key_id: uuid.UUID | None,
    agent_id: uuid.UUID | None = None,
) -> Comparison:
    """Create the sibling task (the same request for another agent: ``agent_id``, or Duke's
    choice with the first agent excluded; same files, conversation, reference check and
    privacy; a judge is not repeated) and the comparison; a delivered first task in
    ``winner`` mode starts waiting for the pick.

    Raises:
        BadRequest: ``agent_id`` is the first task's agent, or no other agent is within budget.
        NotFound: the named agent does not exist or is disabled.
        PaymentRequired: the buyer's balance does not cover the second price.
        Conflict: the second task's idempotency key is taken by another of the buyer's tasks.
    """
    assert task.agent_id is not None
    if agent_id is not None and agent_id == task.agent_id:
        raise BadRequest("agent_id: the second agent must differ from the task's own agent")
    constraints = task.routing.get("constraints", {})
    excluded = [uuid.UUID(a) for a in constraints.get("exclude_agent_ids", [])]
    evaluation = await evaluation_service.get(session, task.id)
    evaluator = None
    if evaluation is not None and evaluation.kind in evaluators.REFERENCE_KINDS:
        evaluator = evaluators.SPEC_ADAPTER.validate_python(evaluation.spec)
    file_ids = [f.id for f in await files_service.list_for_task(session, task.id)]
    try:
        sibling_data = TaskCreate(
            description=task.description,
            complexity=task.complexity,
            max_price_sat=task.max_price_sat,
            cost_weight=task.cost_weight,
            agent_id=agent_id,
            exclude_agent_ids=[] if agent_id is not None else [*excluded, task.agent_id],
            file_ids=file_ids,
            idempotency_key=f"compare:{task.id}",
            external_id=task.external_id,
            chat=ChatPayload.model_validate(task.payload) if task.payload is not None else None,
            evaluator=evaluator,
            private=task.private,
        )
    except ValidationError as exc:  # e.g. the buyer already excluded the most agents allowed
        raise BadRequest(f"the second task cannot be made: {exc.errors()[0]['msg']}") from None
    sibling, created = await tasks_service.create(
        session,
        settings=settings,
        champion=champion,
        buyer=buyer,
        data=sibling_data,
        api_key_id=api_key_id,
        sample_comparison=False,
    )
    if not created:  # the buyer gave this key to a task of their own
        raise Conflict(f"idempotency key {sibling_data.idempotency_key} is already used")
    _record_draw(sibling, {"second_answer_of": str(task.id)})
    comparison = Comparison(
        buyer_id=task.buyer_id,
        task_id=task.id,
        sibling_task_id=sibling.id,
        payment=payment,
        status=ComparisonStatus.OPEN,
        origin=origin,
        probability=probability,
        pick_window_s=settings.dispute_window_s,
    )
    session.add(comparison)
    if payment is ComparisonPayment.WINNER and task.status is TaskStatus.DELIVERED:
        task.accept_by = None  # its dispute window becomes the comparison's pick window
    await session.flush()
    for side in (task, sibling):
        _record_draw(side, {**side.routing["comparison"], "comparison_id": str(comparison.id)})
    await session.flush()
    return comparison


async def get_visible(session: AsyncSession, *, user: User, comparison_id: uuid.UUID) -> Comparison:
    """Return a comparison its buyer (or an admin) may see.

    Raises:
        NotFound: no such comparison, or another buyer's (not revealed).
    """
    comparison = await repository.get(session, comparison_id)
    if comparison is None or (user.role is not UserRole.ADMIN and comparison.buyer_id != user.id):
        raise NotFound(f"comparison {comparison_id} not found")
    return comparison


async def list_visible(
    session: AsyncSession,
    *,
    user: User,
    status: ComparisonStatus | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Comparison], int]:
    """Return a page of the caller's comparisons (everyone's for an admin), newest first."""
    buyer_id = None if user.role is UserRole.ADMIN else user.id
    return await repository.list_for_buyer(
        session, buyer_id, status=status, limit=limit, offset=offset
    )


async def pick(
    session: AsyncSession,
    *,
    settings: Settings,
    user: User,
    comparison_id: uuid.UUID,
    data: PickRequest,
) -> Comparison:
    """Record the better answer of a comparison, by its buyer (a ``buyer`` label) or an admin
    (a ``curator`` label): the winner is labelled a success and its agent's reputation
    recomputed; the loser is labelled a failure only with ``loser_failed``. In ``winner`` mode
    the winner is paid and the loser refunded (``settlement.pay_winner``), in the caller's commit.

    Raises:
        NotFound: no such comparison visible to the caller.
        BadRequest: ``winner_task_id`` is not one of the comparison's tasks.
        Conflict: it was already picked, is void or lapsed, or a side is not delivered yet.
    """
    await get_visible(session, user=user, comparison_id=comparison_id)
    comparison = await repository.get(session, comparison_id, for_update=True)
    assert comparison is not None
    sides = (comparison.task_id, comparison.sibling_task_id)
    if data.winner_task_id not in sides:
        raise BadRequest(
            f"winner_task_id: {data.winner_task_id} is not one of the comparison's tasks "
            f"({sides[0]}, {sides[1]})"
        )
    if comparison.status is not ComparisonStatus.OPEN:
        raise Conflict(f"comparison {comparison_id} is already {comparison.status.value}")
    loser_id = sides[1] if data.winner_task_id == sides[0] else sides[0]
    winner = await _locked_task(session, data.winner_task_id)
    loser = await _locked_task(session, loser_id)
    for side in (winner, loser):
        if side.status not in PICKABLE:
            raise Conflict(
                f"task {side.id} is {side.status.value}; both answers must be delivered first"
            )
    admin = user.role is UserRole.ADMIN
    source = LabelSource.CURATOR if admin else LabelSource.BUYER
    confidence = labels.CURATOR_CONFIDENCE if admin else labels.BUYER_CONFIDENCE
    comparison.status = ComparisonStatus.PICKED
    comparison.winner_task_id = winner.id
    comparison.picked_by_id = user.id
    comparison.pick_source = source
    comparison.reason = data.reason
    comparison.loser_failed = data.loser_failed
    comparison.picked_at = utcnow()
    comparison.pick_by = None
    if comparison.payment is ComparisonPayment.WINNER:
        await settlement.pay_winner(
            session,
            comparison,
            winner=winner,
            loser=loser,
            fee_bps=settings.platform_fee_bps,
            loser_reason=f"the other answer was picked (comparison {comparison.id})",
        )
    detail = {"comparison_id": str(comparison.id), "reason": data.reason or ""}
    await _label(
        session,
        settings,
        winner,
        source=source,
        kind="pairwise_win",
        quality=1.0,
        confidence=confidence,
        detail={**detail, "against_task_id": str(loser.id)},
        actor=user,
    )
    if data.loser_failed:
        await _label(
            session,
            settings,
            loser,
            source=source,
            kind="pairwise_loss",
            quality=0.0,
            confidence=confidence,
            detail={**detail, "against_task_id": str(winner.id)},
            actor=user,
        )
    await session.flush()
    return comparison


async def _locked_task(session: AsyncSession, task_id: uuid.UUID) -> Task:
    task = await session.get(Task, task_id, with_for_update=True, populate_existing=True)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


async def _label(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    *,
    source: LabelSource,
    kind: str,
    quality: float,
    confidence: float,
    detail: dict[str, str],
    actor: User,
) -> None:
    assert task.agent_id is not None
    change = await labels.apply(
        session,
        task_id=task.id,
        source=source,
        kind=kind,
        quality=quality,
        confidence=confidence,
        success_threshold=settings.success_threshold,
        detail=detail,
        actor_id=actor.id,
    )
    if change.quality_changed:
        await tasks_service.update_agent_reputation(
            session, settings, task.agent_id, count_finished=False
        )
