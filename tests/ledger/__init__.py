"""Tests of the ledger, and the ledger assertions other domains' tests share."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccount, LedgerEntry


async def assert_ledger_balanced(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> dict[str, Any]:
    """Assert the admin reconciliation passes (every cached balance equals the sum of its
    entries, every transaction balances, money sums to zero); with ``sessionmaker`` also
    recompute every account from its entries here, independently of the endpoint. Return the
    report."""
    response = await client.get("/admin/ledger/check", headers=admin)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    assert report["ok"] is True, report
    assert report["total_sat"] == 0, report
    assert report["discrepancies"] == [], report
    assert report["unbalanced_transactions"] == [], report
    if sessionmaker is not None:
        async with sessionmaker() as session:
            sums = dict(
                (
                    await session.execute(
                        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_sat)).group_by(
                            LedgerEntry.account_id
                        )
                    )
                ).all()
            )
            accounts = (await session.execute(select(LedgerAccount))).scalars().all()
        for account in accounts:
            assert account.balance_sat == int(sums.get(account.id, 0)), account.name
        assert sum(a.balance_sat for a in accounts) == 0
    return report


async def account_balance(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> int:
    """Return the cached balance of ledger account ``name`` (0 if it does not exist)."""
    async with sessionmaker() as session:
        return await ledger_service.balance(session, name)


async def wallet_balance(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """Return the caller's wallet balance as ``GET /users/me`` shows it."""
    response = await client.get("/users/me", headers=headers)
    assert response.status_code == 200, response.text
    balance: int = response.json()["balance_sat"]
    return balance
