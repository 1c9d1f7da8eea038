"""Racing payout requests and approvals in concurrent sessions (separate connections, started
together behind a barrier): the agent's account is never overdrawn and a payout is paid once.
Both backends; on PostgreSQL the sessions really run at the same time (row locks)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts import repository as accounts_repository
from dukenet.accounts.models import User
from dukenet.errors import Conflict
from dukenet.kit.state import AppState
from dukenet.payments import service
from dukenet.payments.models import PayoutDestination
from dukenet.payments.providers import LedgerProvider, PaymentProvider, open_provider
from dukenet.payments.schemas import PayoutCreate
from tests.ledger import assert_ledger_balanced
from tests.lightning_double import LightningDouble
from tests.payments import Market, agent_balance, earn, market

RACERS = 6


async def _user(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> User:
    async with sessionmaker() as session:
        user = await accounts_repository.get(session, uuid.UUID(user_id))
        assert user is not None
        return user


async def _race_requests(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    user: User,
    data: list[PayoutCreate],
) -> list[bool]:
    barrier = asyncio.Barrier(len(data))

    async def one(item: PayoutCreate) -> bool:
        async with sessionmaker() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Hold a connection before the start (on SQLite a transaction is the write lock).
                await session.execute(text("SELECT 1"))
            await barrier.wait()
            try:
                _, created = await service.request_payout(
                    session, provider=provider, user=user, data=item
                )
                await session.commit()
                return created
            except Conflict:
                await session.rollback()
                return False

    return list(await asyncio.gather(*(one(item) for item in data)))


class TestRacingRequests:
    async def test_racing_requests_cannot_overdraw_the_agent(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        m = await market(client, state, base_price_sat=1_200)
        assert await earn(client, m, tasks=2) == 2_880
        user = await _user(sessionmaker, m.operator_id)
        requests = [
            PayoutCreate(agent_id=uuid.UUID(m.agent_id), amount_sat=1_000) for _ in range(RACERS)
        ]
        created = await _race_requests(sessionmaker, LedgerProvider(), user, requests)
        assert sum(created) == 2
        assert await agent_balance(client, m) == 880
        held = (await client.get("/payouts/balances", headers=m.operator)).json()
        assert held["pending_sat"] == 2_000
        await assert_ledger_balanced(client, m.admin, sessionmaker)

    async def test_racing_double_submits_hold_once(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        m = await market(client, state, base_price_sat=1_200)
        await earn(client, m)
        user = await _user(sessionmaker, m.operator_id)
        item = PayoutCreate(agent_id=uuid.UUID(m.agent_id), amount_sat=400, idempotency_key="same")
        created = await _race_requests(sessionmaker, LedgerProvider(), user, [item] * RACERS)
        assert sum(created) == 1
        assert await agent_balance(client, m) == 1_040
        assert (await client.get("/payouts", headers=m.operator)).json()["total"] == 1


class TestRacingApprovals:
    @pytest.fixture
    def provider_name(self) -> str:
        """Approvals race on a Lightning payout."""
        return "lightning"

    async def test_racing_approvals_pay_a_lightning_invoice_once(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
        lightning: LightningDouble,
    ) -> None:
        m: Market = await market(client, state, base_price_sat=1_200)
        await earn(client, m)
        invoice = lightning.outside_invoice(1_000)
        async with open_provider(state.settings) as provider:
            user = await _user(sessionmaker, m.operator_id)
            async with sessionmaker() as session:
                payout, _ = await service.request_payout(
                    session,
                    provider=provider,
                    user=user,
                    data=PayoutCreate(
                        agent_id=uuid.UUID(m.agent_id),
                        destination=PayoutDestination.EXTERNAL,
                        destination_ref=invoice,
                    ),
                )
                await session.commit()
            barrier = asyncio.Barrier(RACERS)

            async def approve() -> str:
                await barrier.wait()
                response = await client.post(f"/admin/payouts/{payout.id}/approve", headers=m.admin)
                assert response.status_code == 200, response.text
                status: str = response.json()["status"]
                return status

            statuses = await asyncio.gather(*(approve() for _ in range(RACERS)))
        assert "failed" not in statuses
        final = await client.get(f"/payouts/{payout.id}", headers=m.operator)
        assert final.json()["status"] == "paid"
        assert lightning.pay_calls(lightning.payment_hash(invoice)) == 1
        assert await agent_balance(client, m) == 440
        await assert_ledger_balanced(client, m.admin, sessionmaker)
