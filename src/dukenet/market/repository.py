"""Queries of the market domain: the evidence reputation is computed from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task


@dataclass(frozen=True)
class Evidence:
    """One recent outcome of an agent: who bought the task, whether it succeeded, whether the
    buyer pinned the agent (``agent_id`` in the request) rather than letting Duke route it."""

    buyer_id: uuid.UUID
    success: bool
    pinned: bool


async def recent_evidence(
    session: AsyncSession, agent_id: uuid.UUID, *, window: int, success_threshold: float
) -> Sequence[Evidence]:
    """Return the agent's last ``window`` outcomes, newest first (a success:
    ``Outcome.succeeded(success_threshold)``), with each task's buyer and whether it was pinned."""
    success = Outcome.succeeded(success_threshold)
    pinned = Task.routing[("constraints", "pinned")].as_boolean()
    stmt = (
        select(Task.buyer_id, success, pinned)
        .join(Task, Task.id == Outcome.task_id)
        .where(Outcome.agent_id == agent_id)
        .order_by(Outcome.created_at.desc(), Outcome.id.desc())
        .limit(window)
    )
    rows = (await session.execute(stmt)).all()
    return [Evidence(buyer, bool(ok), bool(pin)) for buyer, ok, pin in rows]
