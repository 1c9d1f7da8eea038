"""SQL of the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.kit.orm import epoch_s
from dukenet.ledger.models import (
    LedgerAccount,
    LedgerAccountKind,
    LedgerEntry,
    LedgerTransaction,
    LedgerTransactionKind,
)


async def get_account_by_name(
    session: AsyncSession, name: str, *, for_update: bool = False
) -> LedgerAccount | None:
    """Return the account called ``name`` (row-locked on PostgreSQL if ``for_update``)."""
    stmt = select(LedgerAccount).where(LedgerAccount.name == name)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


_ACCOUNTS = cast(Table, LedgerAccount.__table__)
# Built once: constructing the expression costs more CPU than executing its cached compilation.
# A Core statement: the ORM's synchronisation of loaded objects is done by the caller.
_ADD_BALANCE_BY_NAME = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.name == bindparam("account_name"))
    .values(balance_sat=_ACCOUNTS.c.balance_sat + bindparam("delta_sat"))
    .returning(_ACCOUNTS.c.id, _ACCOUNTS.c.kind, _ACCOUNTS.c.balance_sat)
)


async def add_balance_by_name(
    session: AsyncSession, name: str, delta_sat: int
) -> tuple[uuid.UUID, LedgerAccountKind, int] | None:
    """Add ``delta_sat`` to the cached balance of the account called ``name`` in one statement
    (which also row-locks it until the transaction ends); return (id, kind, new balance), or
    None when there is no such account."""
    row = (
        await session.execute(_ADD_BALANCE_BY_NAME, {"account_name": name, "delta_sat": delta_sat})
    ).one_or_none()
    if row is None:
        return None
    return row[0], LedgerAccountKind(row[1]), int(row[2])


async def get_transaction_by_key(session: AsyncSession, key: str) -> LedgerTransaction | None:
    """Return the transaction with this idempotency key, or None."""
    stmt = select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def transactions_for_task(
    session: AsyncSession, task_id: uuid.UUID
) -> Sequence[tuple[LedgerTransaction, LedgerEntry, str]]:
    """Return (transaction, entry, account name) rows of one task, oldest first."""
    stmt = (
        select(LedgerTransaction, LedgerEntry, LedgerAccount.name)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.task_id == task_id)
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id, LedgerEntry.amount_sat)
    )
    return [(t, e, n) for t, e, n in (await session.execute(stmt)).all()]


async def entry_sums_by_account(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Return the sum of entries per account."""
    stmt = select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_sat)).group_by(
        LedgerEntry.account_id
    )
    return {a: int(s) for a, s in (await session.execute(stmt)).all()}


async def unbalanced_transactions(session: AsyncSession) -> list[uuid.UUID]:
    """Return ids of transactions whose entries do not sum to zero."""
    stmt = (
        select(LedgerEntry.transaction_id)
        .group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount_sat) != 0)
    )
    return list((await session.execute(stmt)).scalars())


async def all_accounts(session: AsyncSession) -> Sequence[LedgerAccount]:
    """Return every ledger account."""
    return (
        (await session.execute(select(LedgerAccount).order_by(LedgerAccount.name))).scalars().all()
    )


async def count_transactions(session: AsyncSession) -> int:
    """Return the number of ledger transactions."""
    return int((await session.execute(select(func.count(LedgerTransaction.id)))).scalar_one())


async def bucketed_sums(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    account_kinds: Sequence[LedgerAccountKind],
    account_name: str | None,
    since_s: int,
    bucket_s: int,
) -> list[tuple[int, LedgerAccountKind, LedgerTransactionKind, int, int]]:
    """Return (bucket index, account kind, transaction kind, credits, debits) of the entries of
    ``owner_id``'s accounts of ``account_kinds`` (only ``account_name`` if given) made at or
    after ``since_s`` (seconds since 1970, UTC), in buckets of ``bucket_s`` seconds counted from
    ``since_s``; credits and debits in satoshis, both positive."""
    epoch = epoch_s(session, LedgerEntry.created_at)
    bucket = ((epoch - since_s) // bucket_s).label("bucket")
    credits = func.sum(case((LedgerEntry.amount_sat > 0, LedgerEntry.amount_sat), else_=0))
    debits = func.sum(case((LedgerEntry.amount_sat < 0, -LedgerEntry.amount_sat), else_=0))
    since = datetime.fromtimestamp(since_s, UTC)
    stmt = (
        select(bucket, LedgerAccount.kind, LedgerTransaction.kind, credits, debits)
        .select_from(LedgerEntry)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerAccount.owner_id == owner_id,
            LedgerAccount.kind.in_(list(account_kinds)),
            LedgerEntry.created_at >= since,
        )
        .group_by(bucket, LedgerAccount.kind, LedgerTransaction.kind)
    )
    if account_name is not None:
        stmt = stmt.where(LedgerAccount.name == account_name)
    rows = (await session.execute(stmt)).all()
    return [
        (int(b), LedgerAccountKind(a), LedgerTransactionKind(t), int(c or 0), int(d or 0))
        for b, a, t, c, d in rows
    ]
