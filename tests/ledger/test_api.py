"""The ledger through the API: admin credits, reconciliation, and money conserved after every
step of a task's life, with and without a platform fee."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.ledger.models import LedgerAccount
from dukenet.ledger.service import PLATFORM_REVENUE, agent_name, wallet_name
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


class TestCredit:
    async def test_admin_credits_accumulate_and_nobody_else_credits(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer, headers = await register(client)
        first = await client.post(
            f"/admin/users/{buyer['id']}/credit",
            headers=admin,
            json={"amount_sat": 2_500, "memo": "welcome"},
        )
        assert first.status_code == 200
        assert first.json() == {"account_name": f"wallet:{buyer['id']}", "balance_sat": 2_500}
        await credit(client, admin, buyer["id"], 500)
        assert await wallet_balance(client, headers) == 3_000

        # Only admins credit, only known users, only positive amounts.
        url = f"/admin/users/{buyer['id']}/credit"
        by_buyer = await client.post(url, headers=headers, json={"amount_sat": 1_000_000})
        assert by_buyer.status_code == 403
        unknown = await client.post(
            f"/admin/users/{uuid.uuid4()}/credit", headers=admin, json={"amount_sat": 1}
        )
        assert unknown.status_code == 404
        for amount in (0, -1, 10**15 + 1):
            bad = await client.post(url, headers=admin, json={"amount_sat": amount})
            assert bad.status_code == 422, amount
        assert await wallet_balance(client, headers) == 3_000
        assert (await client.get("/admin/ledger/check", headers=headers)).status_code == 403
        report = await assert_ledger_balanced(client, admin, state.sessionmaker)
        assert report["transactions"] == 2


class TestReconciliation:
    async def test_a_cached_balance_that_drifts_from_its_entries_is_reported(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        _, admin = await create_admin(state)
        buyer, _ = await register(client)
        await credit(client, admin, buyer["id"], 1_000)
        name = wallet_name(uuid.UUID(buyer["id"]))
        async with sessionmaker() as session:
            await session.execute(
                update(LedgerAccount).where(LedgerAccount.name == name).values(balance_sat=1_500)
            )
            await session.commit()

        report = (await client.get("/admin/ledger/check", headers=admin)).json()
        assert report["ok"] is False
        assert report["total_sat"] == 500
        assert report["discrepancies"] == [
            {"account_name": name, "cached_sat": 1_500, "entries_sat": 1_000}
        ]


async def _finish(
    client: httpx.AsyncClient, operator: dict[str, str], task_id: str, *, success: bool
) -> None:
    claim = (await client.post("/runner/claim", headers=operator, json={})).json()
    assert claim["task_id"] == task_id
    response = await client.post(
        f"/runner/tasks/{task_id}/result",
        headers=operator,
        json={
            "lease_token": claim["lease_token"],
            "idempotency_key": f"{task_id}:1",
            "text": "answer",
            "success": success,
        },
    )
    assert response.status_code == 201, response.text


async def _lifecycle(
    client: httpx.AsyncClient, state: AppState
) -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """Deposit, then one completed task, one failed task and one refused task (402), checking
    the ledger after every step; return (buyer headers, agent, the two tasks)."""
    _, admin = await create_admin(state)
    buyer, headers = await register(client)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    await assert_ledger_balanced(client, admin, state.sessionmaker)
    await credit(client, admin, buyer["id"], 8_000)
    await assert_ledger_balanced(client, admin, state.sessionmaker)

    tasks = []
    for success in (True, False):
        task = (await submit_task(client, headers, complexity=3)).json()
        await assert_ledger_balanced(client, admin, state.sessionmaker)
        await _finish(client, operator, task["id"], success=success)
        await assert_ledger_balanced(client, admin, state.sessionmaker)
        tasks.append(task)
    refused = await submit_task(client, headers, complexity=10)  # 12,000 sat
    assert refused.status_code == 402
    await assert_ledger_balanced(client, admin, state.sessionmaker)
    return headers, agent, tasks


class TestLedgerThroughATasksLife:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """The market takes 2.5 % of every completed task."""
        return settings.model_copy(update={"platform_fee_bps": 250})

    async def test_money_is_conserved_and_the_fee_goes_to_platform_revenue(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        headers, agent, tasks = await _lifecycle(client, state)
        fee = 3_600 * 250 // 10_000
        assert fee == 90
        assert await wallet_balance(client, headers) == 8_000 - 3_600
        agent_account = agent_name(uuid.UUID(agent["id"]))
        assert await account_balance(state.sessionmaker, agent_account) == 3_600 - fee
        assert await account_balance(state.sessionmaker, PLATFORM_REVENUE) == fee

        completed = (await client.get(f"/tasks/{tasks[0]['id']}", headers=headers)).json()
        release = completed["transactions"][-1]
        assert release["kind"] == "escrow_release"
        assert {e["account_name"]: e["amount_sat"] for e in release["entries"]} == {
            f"escrow:{tasks[0]['id']}": -3_600,
            agent_account: 3_510,
            PLATFORM_REVENUE: 90,
        }
        failed = (await client.get(f"/tasks/{tasks[1]['id']}", headers=headers)).json()
        refund = failed["transactions"][-1]
        assert refund["kind"] == "escrow_refund"
        assert sorted(e["amount_sat"] for e in refund["entries"]) == [-3_600, 3_600]
