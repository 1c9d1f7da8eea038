"""What the task lifecycle asks the comparisons domain (``tasks.service`` calls these).

In ``winner`` mode both answers of an open comparison wait, delivered and unpaid, for the pick:
their dispute window is the comparison's pick window (``accept_by`` stays empty), a plain
accept is refused, and the sweeper settles a comparison nobody picked in time. A side that
fails, is rejected or is cancelled voids its comparison, and the other side goes back to the
plain lifecycle (its dispute window starts). This module imports no task service: the task
service imports it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.comparisons import repository, settlement
from dukenet.comparisons.models import Comparison, ComparisonPayment, ComparisonStatus
from dukenet.config import Settings
from dukenet.errors import Conflict
from dukenet.kit.orm import utcnow
from dukenet.learning.serving import ChampionCache
from dukenet.tasks.models import Task, TaskStatus
from dukenet.tasks.schemas import TaskCreate


def _compared(task: Task) -> bool:
    """Whether the task's receipt says it is a side of a comparison (no query otherwise)."""
    draw: dict[str, Any] = task.routing.get("comparison") or {}
    return bool(draw.get("compared")) or "second_answer_of" in draw


async def after_create(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    buyer: User,
    task: Task,
    data: TaskCreate,
    api_key_id: uuid.UUID | None,
) -> None:
    """Open a comparison for a new task when asked or drawn (``comparisons.service``)."""
    if not data.compare and settings.comparison_share <= 0:
        return
    # imported here: the comparison service creates its second task through tasks.service
    from dukenet.comparisons import service

    await service.after_create(
        session,
        settings=settings,
        champion=champion,
        buyer=buyer,
        task=task,
        data=data,
        api_key_id=api_key_id,
    )


def _other_side(comparison: Comparison, task_id: uuid.UUID) -> uuid.UUID:
    return comparison.sibling_task_id if comparison.task_id == task_id else comparison.task_id


async def _open_held(session: AsyncSession, task: Task) -> Comparison | None:
    if not _compared(task):
        return None
    comparison = await repository.get_for_task(session, task.id, for_update=True)
    if (
        comparison is None
        or comparison.status is not ComparisonStatus.OPEN
        or comparison.payment is not ComparisonPayment.WINNER
    ):
        return None
    return comparison


async def on_delivered(session: AsyncSession, task: Task) -> bool:
    """Return True when the task's payment must wait for a pick (a side of an open
    ``winner``-mode comparison); when the other side is delivered too, the pick window starts
    now (``pick_window_s``)."""
    comparison = await _open_held(session, task)
    if comparison is None:
        return False
    other = await session.get(Task, _other_side(comparison, task.id))
    if other is not None and other.status is TaskStatus.DELIVERED:
        comparison.pick_by = utcnow() + timedelta(seconds=comparison.pick_window_s)
    return True


async def check_accept(session: AsyncSession, task: Task) -> None:
    """Refuse a plain accept of a side of an open ``winner``-mode comparison.

    Raises:
        Conflict: the task waits for a pick (``POST /comparisons/{id}/pick``).
    """
    comparison = await _open_held(session, task)
    if comparison is not None:
        raise Conflict(
            f"task {task.id} is one side of comparison {comparison.id}: pick the better answer "
            f"with POST /comparisons/{comparison.id}/pick (only the winner is paid)"
        )


async def on_refund(session: AsyncSession, task: Task) -> None:
    """Void the open comparison of a task whose escrow is being refunded (it failed, was
    rejected or cancelled): no preference can be picked; a held other side gets its dispute
    window (``pick_window_s`` from now) and settles as a plain task."""
    if not _compared(task):
        return
    comparison = await repository.get_for_task(session, task.id, for_update=True)
    if comparison is None or comparison.status is not ComparisonStatus.OPEN:
        return
    comparison.status = ComparisonStatus.VOID
    comparison.pick_by = None
    other = await session.get(Task, _other_side(comparison, task.id))
    if (
        comparison.payment is ComparisonPayment.WINNER
        and other is not None
        and other.status is TaskStatus.DELIVERED
        and other.accept_by is None
    ):
        other.accept_by = utcnow() + timedelta(seconds=comparison.pick_window_s)
    await session.flush()


async def settle_lapsed(session: AsyncSession, settings: Settings) -> int:
    """Settle the ``winner``-mode comparisons whose pick window passed without a pick: Duke's
    own choice (the first task) is paid and the second agent's escrow refunded, each in its own
    task's transaction (``settlement.pay_winner``), in the caller's commit; no label is written.
    Returns how many."""
    comparisons = await repository.lapsed(session, utcnow())
    for comparison in comparisons:
        first = await session.get(Task, comparison.task_id, populate_existing=True)
        second = await session.get(Task, comparison.sibling_task_id, populate_existing=True)
        assert first is not None and second is not None
        await settlement.pay_winner(
            session,
            comparison,
            winner=first,
            loser=second,
            fee_bps=settings.platform_fee_bps,
            loser_reason="the buyer picked no answer in time; the first agent's answer is paid",
        )
        comparison.status = ComparisonStatus.LAPSED
    await session.flush()
    return len(comparisons)
