"""SQL of the gateway: spend limits, usage aggregates, webhook endpoints and the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Date, Select, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dukenet.accounts.models import ApiKey
from dukenet.agents.models import Agent
from dukenet.gateway.models import (
    ApiKeyLimit,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from dukenet.tasks.models import Task, TaskResult, TaskStatus

REFUNDED = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.REJECTED)


def _spent_sat() -> ColumnElement[int]:
    """What a task costs its buyer now: nothing once refunded, its price once paid, the whole
    escrow while it is held (a failover's remainder returns only at settlement)."""
    return case(
        (Task.status.in_(REFUNDED), 0),
        (Task.status == TaskStatus.COMPLETED, Task.price_sat),
        else_=Task.escrow_sat,
    )


async def lock_limit(session: AsyncSession, api_key_id: uuid.UUID) -> ApiKeyLimit | None:
    """Return the key's limits locked for update (None when it has none)."""
    return (
        await session.execute(
            select(ApiKeyLimit).where(ApiKeyLimit.api_key_id == api_key_id).with_for_update()
        )
    ).scalar_one_or_none()


async def get_limit(session: AsyncSession, api_key_id: uuid.UUID) -> ApiKeyLimit | None:
    """Return the key's limits (None when it has none)."""
    return await session.get(ApiKeyLimit, api_key_id)


async def limits_for(
    session: AsyncSession, api_key_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ApiKeyLimit]:
    """Return the limits of these keys, by key id (keys without limits are absent)."""
    if not api_key_ids:
        return {}
    rows = await session.execute(
        select(ApiKeyLimit).where(ApiKeyLimit.api_key_id.in_(list(api_key_ids)))
    )
    return {row.api_key_id: row for row in rows.scalars()}


async def add(session: AsyncSession, row: Any) -> Any:
    """Add a row and flush it."""
    session.add(row)
    await session.flush()
    return row


async def spent_sat(session: AsyncSession, api_key_id: uuid.UUID, since: datetime | None) -> int:
    """Return the satoshis the key's tasks created at or after ``since`` (all when None) hold
    or paid (refunded tasks count 0)."""
    query = select(func.coalesce(func.sum(_spent_sat()), 0)).where(Task.api_key_id == api_key_id)
    if since is not None:
        query = query.where(Task.created_at >= since)
    return int((await session.execute(query)).scalar_one())


def _tokens(name: str) -> ColumnElement[int]:
    return func.coalesce(TaskResult.meta["usage"][name].as_integer(), 0)


def _day(session: AsyncSession) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Task.created_at)
    return cast(func.timezone("UTC", Task.created_at), Date)


def usage_query(
    session: AsyncSession,
    *,
    buyer_id: uuid.UUID,
    group_by: Sequence[str],
    api_key_id: uuid.UUID | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> Select[Any]:
    """Return the usage aggregate of a buyer's tasks: calls, satoshis spent (refunds
    excluded), prompt/completion tokens from the agents' reports, grouped by any of ``day``
    (UTC), ``agent`` and ``api_key``."""
    keys: list[ColumnElement[Any]] = []
    if "day" in group_by:
        keys.append(_day(session).label("day"))
    if "agent" in group_by:
        keys.extend([Task.agent_id.label("agent_id"), Agent.name.label("agent_name")])
    if "api_key" in group_by:
        keys.append(Task.api_key_id.label("api_key_id"))
    query = (
        select(
            *keys,
            func.count(Task.id).label("calls"),
            func.coalesce(func.sum(_spent_sat()), 0).label("spent_sat"),
            func.coalesce(func.sum(_tokens("prompt_tokens")), 0).label("prompt_tokens"),
            func.coalesce(func.sum(_tokens("completion_tokens")), 0).label("completion_tokens"),
        )
        .select_from(Task)
        .outerjoin(TaskResult, TaskResult.task_id == Task.id)
        .outerjoin(Agent, Agent.id == Task.agent_id)
        .where(Task.buyer_id == buyer_id)
    )
    if api_key_id is not None:
        query = query.where(Task.api_key_id == api_key_id)
    if created_from is not None:
        query = query.where(Task.created_at >= created_from)
    if created_to is not None:
        query = query.where(Task.created_at < created_to)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    return query


async def usage(session: AsyncSession, query: Select[Any]) -> list[dict[str, Any]]:
    """Run a usage query; return its rows as dicts."""
    return [dict(row._mapping) for row in await session.execute(query)]


async def get_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    """Return an API key by id."""
    return await session.get(ApiKey, key_id)


# webhooks


async def list_endpoints(session: AsyncSession, owner_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    """Return a user's webhook endpoints, newest first."""
    rows = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.owner_id == owner_id)
        .order_by(WebhookEndpoint.created_at.desc())
    )
    return rows.scalars().all()


async def get_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    """Return a webhook endpoint by id."""
    return await session.get(WebhookEndpoint, endpoint_id)


async def list_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """Return a page of an endpoint's deliveries, newest first, and the total."""
    where = WebhookDelivery.endpoint_id == endpoint_id
    total = (
        await session.execute(select(func.count()).select_from(WebhookDelivery).where(where))
    ).scalar_one()
    rows = await session.execute(
        select(WebhookDelivery)
        .where(where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    return rows.scalars().all(), int(total)


async def attempts_for(
    session: AsyncSession, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    """Return the attempts of these deliveries, oldest first, by delivery id."""
    found: dict[uuid.UUID, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return found
    rows = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.attempt)
    )
    for attempt in rows.scalars():
        found[attempt.delivery_id].append(attempt)
    return found


async def claim_due(
    session: AsyncSession, now: datetime, *, limit: int
) -> Sequence[tuple[WebhookDelivery, WebhookEndpoint]]:
    """Return pending deliveries due by ``now`` with their endpoints, locked (SKIP LOCKED)."""
    rows = await session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    return [(d, e) for d, e in rows.all()]


def endpoints_for_task_query(
    buyer_id: uuid.UUID, agent_id: uuid.UUID | None
) -> Select[tuple[uuid.UUID, list[Any]]]:
    """Return the active endpoints (id, events) of a task's buyer and its agent's operator."""
    owners: list[ColumnElement[bool]] = [WebhookEndpoint.owner_id == buyer_id]
    if agent_id is not None:
        owners.append(
            WebhookEndpoint.owner_id
            == select(Agent.owner_id).where(Agent.id == agent_id).scalar_subquery()
        )
    return select(WebhookEndpoint.id, WebhookEndpoint.events).where(
        WebhookEndpoint.is_active.is_(True), or_(*owners)
    )
