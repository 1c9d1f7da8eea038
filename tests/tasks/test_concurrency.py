"""Concurrent requests on one app and database: no overdraft, no double charge, no task claimed
twice, no result paid twice; the ledger balances afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.kit.state import AppState
from dukenet.ledger.models import LedgerAccount, LedgerAccountKind
from dukenet.ledger.service import agent_name
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
PRICE = 3_600  # 1,000 sat × complexity 3 × 1.2


@dataclass
class Market:
    """An admin, a buyer with an empty wallet and an operator with one LLM agent."""

    admin: dict[str, str]
    buyer_id: str
    buyer: dict[str, str]
    operator: dict[str, str]
    agent_id: str


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState) -> Market:
    """A market with one agent at a base price of 1,000 sat."""
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    return Market(admin, buyer["id"], buyer_headers, operator, agent["id"])


async def _escrowed_sat(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        stmt = select(func.coalesce(func.sum(LedgerAccount.balance_sat), 0)).where(
            LedgerAccount.kind == LedgerAccountKind.ESCROW
        )
        return int((await session.execute(stmt)).scalar_one())


class TestConcurrentCreation:
    async def test_a_balance_covering_some_tasks_pays_for_exactly_those(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        deposit = 3 * PRICE + 100
        await credit(client, market.admin, market.buyer_id, deposit)

        responses = await asyncio.gather(
            *(submit_task(client, market.buyer, complexity=3) for _ in range(10))
        )

        codes = Counter(r.status_code for r in responses)
        assert codes == {201: 3, 402: 7}, [r.text for r in responses]
        assert all(
            "insufficient balance" in r.json()["detail"] for r in responses if r.status_code == 402
        )
        assert await wallet_balance(client, market.buyer) == 100
        listed = (await client.get("/tasks", headers=market.buyer)).json()
        assert listed["total"] == 3
        assert sorted(t["id"] for t in listed["items"]) == sorted(
            r.json()["id"] for r in responses if r.status_code == 201
        )
        assert await _escrowed_sat(sessionmaker) == 3 * PRICE
        await assert_ledger_balanced(client, market.admin, sessionmaker)

    async def test_a_retried_submission_racing_itself_charges_once(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await credit(client, market.admin, market.buyer_id, 10 * PRICE)

        responses = await asyncio.gather(
            *(submit_task(client, market.buyer, idempotency_key="order-7") for _ in range(6))
        )

        codes = Counter(r.status_code for r in responses)
        assert codes[201] == 1, [r.text for r in responses]
        # Losers of the race see the first task (200) or are told to retry (409), never a 2nd task.
        assert set(codes) <= {200, 201, 409}, [r.text for r in responses]
        [created] = [r.json() for r in responses if r.status_code == 201]
        assert all(r.json()["id"] == created["id"] for r in responses if r.status_code == 200)
        retry = await submit_task(client, market.buyer, idempotency_key="order-7")
        assert retry.status_code == 200 and retry.json()["id"] == created["id"]
        assert (await client.get("/tasks", headers=market.buyer)).json()["total"] == 1
        assert await wallet_balance(client, market.buyer) == 10 * PRICE - PRICE
        await assert_ledger_balanced(client, market.admin, sessionmaker)


class TestConcurrentRunners:
    async def test_racing_claims_take_each_task_once(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        await credit(client, market.admin, market.buyer_id, 3 * PRICE)
        for _ in range(3):
            assert (await submit_task(client, market.buyer)).status_code == 201

        claims = await asyncio.gather(
            *(
                client.post("/runner/claim", headers=market.operator, json={"runner": f"r{i}"})
                for i in range(8)
            )
        )

        assert all(c.status_code == 200 for c in claims), [c.text for c in claims]
        won = [c.json() for c in claims if c.json() is not None]
        assert len(won) == 3
        assert len({c["task_id"] for c in won}) == 3
        assert len({c["lease_token"] for c in won}) == 3
        executing = await client.get("/tasks", headers=market.buyer, params={"status": "executing"})
        assert executing.json()["total"] == 3

    async def test_racing_result_submissions_pay_the_agent_exactly_once(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await credit(client, market.admin, market.buyer_id, PRICE)
        task = (await submit_task(client, market.buyer)).json()
        claim = (await client.post("/runner/claim", headers=market.operator, json={})).json()

        def body(key: str) -> dict[str, Any]:
            return {
                "lease_token": claim["lease_token"],
                "idempotency_key": key,
                "text": f"answer {key}",
                "success": True,
            }

        url = f"/runner/tasks/{task['id']}/result"
        keys = "aaabbc"
        responses = await asyncio.gather(
            *(client.post(url, headers=market.operator, json=body(k)) for k in keys)
        )

        assert Counter(r.status_code for r in responses)[201] == 1, [r.text for r in responses]
        [winner] = [r.json() for r in responses if r.status_code == 201]
        winning_key = winner["text"].removeprefix("answer ")
        for key, response in zip(keys, responses, strict=True):
            if key == winning_key:  # a retry of the winning submission gets its result
                assert response.status_code in (200, 201), response.text
                assert response.json() == winner
            else:  # a different submission after the task completed
                assert response.status_code == 409, response.text
        shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert shown["status"] == "completed"
        assert shown["result"]["id"] == winner["id"]
        assert [t["kind"] for t in shown["transactions"]] == ["escrow_hold", "escrow_release"]
        earned = await account_balance(sessionmaker, agent_name(uuid.UUID(market.agent_id)))
        assert earned == PRICE
        assert await wallet_balance(client, market.buyer) == 0
        await assert_ledger_balanced(client, market.admin, sessionmaker)
