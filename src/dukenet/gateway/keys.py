"""Buyer API keys with spend limits (``accounts.api_keys`` issues and authenticates them), and
usage reports: calls, satoshis and tokens per key, per UTC day and per agent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import api_keys
from dukenet.accounts.models import ApiKey, User
from dukenet.errors import BadRequest, NotFound
from dukenet.gateway import repository
from dukenet.gateway.models import ApiKeyLimit
from dukenet.gateway.schemas import (
    BuyerKeyCreate,
    BuyerKeyRead,
    BuyerKeyUpdate,
    KeyUsage,
    UsageReport,
    UsageRow,
)
from dukenet.gateway.spend import day_start
from dukenet.kit.orm import utcnow

GROUPS = ("day", "agent", "api_key")


async def create(session: AsyncSession, *, owner: User, data: BuyerKeyCreate) -> tuple[ApiKey, str]:
    """Create a buyer's API key with its spend limits; return the key and its secret.

    Raises:
        Forbidden: ``owner`` is not a buyer or admin.
    """
    key, secret = await api_keys.create(
        session, owner=owner, name=data.name, roles=api_keys.BUYER_KEY_ROLES
    )
    if data.daily_limit_sat is not None or data.total_limit_sat is not None:
        await repository.add(
            session,
            ApiKeyLimit(
                api_key_id=key.id,
                daily_limit_sat=data.daily_limit_sat,
                total_limit_sat=data.total_limit_sat,
            ),
        )
    return key, secret


async def _own_key(session: AsyncSession, owner: User, key_id: uuid.UUID) -> ApiKey:
    key = await repository.get_key(session, key_id)
    if key is None or key.user_id != owner.id:
        raise NotFound(f"API key {key_id} not found")
    return key


async def update_limits(
    session: AsyncSession, *, owner: User, key_id: uuid.UUID, data: BuyerKeyUpdate
) -> ApiKey:
    """Replace the spend limits of one of ``owner``'s keys (None: unlimited).

    Raises:
        NotFound: no such key, or it is someone else's.
    """
    key = await _own_key(session, owner, key_id)
    limit = await repository.lock_limit(session, key.id)
    if limit is None:
        limit = await repository.add(session, ApiKeyLimit(api_key_id=key.id))
    limit.daily_limit_sat = data.daily_limit_sat
    limit.total_limit_sat = data.total_limit_sat
    await session.flush()
    return key


async def revoke(session: AsyncSession, *, owner: User, key_id: uuid.UUID) -> ApiKey:
    """Revoke one of ``owner``'s keys (its tasks go on; the key authenticates no more).

    Raises:
        NotFound: no such key, or it is someone else's.
    """
    return await api_keys.revoke(session, owner=owner, key_id=key_id)


async def describe(
    session: AsyncSession, *, owner: User, keys: Sequence[ApiKey]
) -> list[BuyerKeyRead]:
    """Return keys with their limits and usage (total and today, UTC)."""
    ids = [k.id for k in keys]
    limits = await repository.limits_for(session, ids)
    totals = await _by_key(session, owner, ids, since=None)
    today = await _by_key(session, owner, ids, since=day_start(utcnow()))
    reads = []
    for key in keys:
        limit = limits.get(key.id)
        total = totals.get(key.id)
        reads.append(
            BuyerKeyRead(
                id=key.id,
                name=key.name,
                prefix=key.prefix,
                created_at=key.created_at,
                last_used_at=key.last_used_at,
                revoked_at=key.revoked_at,
                daily_limit_sat=limit.daily_limit_sat if limit else None,
                total_limit_sat=limit.total_limit_sat if limit else None,
                usage=KeyUsage(
                    calls=total.calls if total else 0,
                    spent_sat=total.spent_sat if total else 0,
                    spent_today_sat=today[key.id].spent_sat if key.id in today else 0,
                    prompt_tokens=total.prompt_tokens if total else 0,
                    completion_tokens=total.completion_tokens if total else 0,
                ),
            )
        )
    return reads


async def _by_key(
    session: AsyncSession, owner: User, ids: Sequence[uuid.UUID], *, since: datetime | None
) -> dict[uuid.UUID, UsageRow]:
    if not ids:
        return {}
    query = repository.usage_query(
        session,
        buyer_id=owner.id,
        group_by=["api_key"],
        api_key_id=None,
        created_from=since,
        created_to=None,
    )
    rows = [UsageRow.model_validate(r) for r in await repository.usage(session, query)]
    return {r.api_key_id: r for r in rows if r.api_key_id is not None and r.api_key_id in ids}


async def list_keys(session: AsyncSession, *, owner: User) -> list[BuyerKeyRead]:
    """Return ``owner``'s API keys (revoked ones included) with limits and usage."""
    return await describe(session, owner=owner, keys=await api_keys.list_keys(session, owner=owner))


async def get(session: AsyncSession, *, owner: User, key_id: uuid.UUID) -> BuyerKeyRead:
    """Return one of ``owner``'s keys with its limits and usage.

    Raises:
        NotFound: no such key, or it is someone else's.
    """
    key = await _own_key(session, owner, key_id)
    return (await describe(session, owner=owner, keys=[key]))[0]


async def usage_report(
    session: AsyncSession,
    *,
    buyer: User,
    group_by: Sequence[str],
    api_key_id: uuid.UUID | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> UsageReport:
    """Return the buyer's calls, satoshis spent (refunds excluded) and tokens grouped by any of
    ``day`` (UTC), ``agent``, ``api_key``, over tasks created in ``[created_from, created_to)``.

    Raises:
        BadRequest: an unknown group, a time without a timezone, or an empty interval.
    """
    unknown = sorted(set(group_by) - set(GROUPS))
    if unknown:
        raise BadRequest(f"group_by: unknown {', '.join(unknown)}; use {', '.join(GROUPS)}")
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} needs a timezone (e.g. 2026-12-01T00:00:00Z)")
    if created_from is not None and created_to is not None and created_from >= created_to:
        raise BadRequest("created_from must be before created_to")
    groups = [g for g in GROUPS if g in group_by]

    async def run(by: Sequence[str]) -> list[UsageRow]:
        query = repository.usage_query(
            session,
            buyer_id=buyer.id,
            group_by=by,
            api_key_id=api_key_id,
            created_from=created_from,
            created_to=created_to,
        )
        return [UsageRow.model_validate(r) for r in await repository.usage(session, query)]

    return UsageReport(group_by=groups, rows=await run(groups), total=(await run([]))[0])
