"""API keys' spend limits, checked inside the transaction that creates a task paid through
the key: the key's limit row is locked first, so racing calls through one key are serialised
and together never spend past a limit (SQLite serialises writers anyway, BEGIN IMMEDIATE)."""

from __future__ import annotations

import uuid
from datetime import datetime, time

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.errors import PaymentRequired
from dukenet.gateway import repository


def day_start(now: datetime) -> datetime:
    """Return the start (00:00 UTC) of ``now``'s UTC day; ``now`` must be aware."""
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


async def reserve(
    session: AsyncSession, *, api_key_id: uuid.UUID, amount_sat: int, now: datetime
) -> None:
    """Admit a new task of ``amount_sat`` satoshis paid through the key, or refuse it.

    What a key has spent is what its tasks hold in escrow or paid (refunds count nothing), in
    total and since 00:00 UTC; the caller creates the task in the same transaction, which holds
    the key's lock until it commits.

    Raises:
        PaymentRequired: the task would take the key past its daily or total limit.
    """
    limit = await repository.lock_limit(session, api_key_id)
    if limit is None:
        return
    for name, cap, since in (
        ("daily", limit.daily_limit_sat, day_start(now)),
        ("total", limit.total_limit_sat, None),
    ):
        if cap is None:
            continue
        spent = await repository.spent_sat(session, api_key_id, since)
        if spent + amount_sat > cap:
            raise PaymentRequired(
                f"API key spend limit reached: {name} limit {cap} sat, {spent} sat spent, "
                f"this task costs {amount_sat} sat"
            )
