"""Binding quotes: a quote's id buys its agent at no more than its price, once, before it
expires; otherwise 409 and nothing is charged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.tasks.quotes import TaskQuote
from tests.factories import create_admin, credit, llm_agent, register, submit_task

UNUSED = "http://127.0.0.1:9/v1"
BODY = {"description": "Translate this.", "complexity": 2}
DEPOSIT = 10_000_000


async def _market(
    client: httpx.AsyncClient, state: AppState
) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED, base_price_sat=500)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    return operator, headers, agent


async def _quote(client: httpx.AsyncClient, buyer: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/tasks/quote", headers=buyer, json=BODY)
    assert response.status_code == 200, response.text
    quote: dict[str, Any] = response.json()
    return quote


async def _balance(client: httpx.AsyncClient, buyer: dict[str, str]) -> int:
    balance: int = (await client.get("/users/me", headers=buyer)).json()["balance_sat"]
    return balance


class TestBindingQuote:
    async def test_a_quote_buys_its_agent_at_its_price_once(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, buyer, agent = await _market(client, state)
        quote = await _quote(client, buyer)
        assert quote["quote_id"] and quote["expires_at"] and quote["price_sat"] == 1_200
        task = await submit_task(client, buyer, **BODY, quote_id=quote["quote_id"])
        assert task.status_code == 201, task.text
        assert task.json()["agent_id"] == agent["id"] and task.json()["price_sat"] == 1_200
        again = await submit_task(client, buyer, **BODY, quote_id=quote["quote_id"])
        assert again.status_code == 409 and "already used" in again.json()["detail"]
        assert await _balance(client, buyer) == DEPOSIT - 1_200

    async def test_a_price_raised_after_the_quote_is_409_and_charges_nothing(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        operator, buyer, agent = await _market(client, state)
        quote = await _quote(client, buyer)
        raised = await client.patch(
            f"/agents/{agent['id']}", headers=operator, json={"base_price_sat": 2_500_000}
        )
        assert raised.status_code == 200
        task = await submit_task(client, buyer, **BODY, quote_id=quote["quote_id"])
        assert task.status_code == 409, task.text
        assert "rose from 1200 to 6000000 sat" in task.json()["detail"]
        assert await _balance(client, buyer) == DEPOSIT
        assert (await client.get("/tasks", headers=buyer)).json()["total"] == 0

    async def test_expired_disabled_other_request_and_other_buyer(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        operator, buyer, agent = await _market(client, state)
        expired = await _quote(client, buyer)
        async with state.sessionmaker() as session:
            await session.execute(
                update(TaskQuote)
                .where(TaskQuote.id == uuid.UUID(expired["quote_id"]))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        response = await submit_task(client, buyer, **BODY, quote_id=expired["quote_id"])
        assert response.status_code == 409 and "expired" in response.json()["detail"]

        other = await _quote(client, buyer)
        response = await submit_task(
            client, buyer, description="Something else.", complexity=2, quote_id=other["quote_id"]
        )
        assert response.status_code == 409 and "another description" in response.json()["detail"]
        response = await submit_task(
            client, buyer, **{**BODY, "complexity": 9}, quote_id=other["quote_id"]
        )
        assert response.status_code == 409

        _, stranger = await register(client)
        response = await submit_task(client, stranger, **BODY, quote_id=other["quote_id"])
        assert response.status_code == 404

        await client.post(f"/agents/{agent['id']}/disable", headers=operator)
        response = await submit_task(client, buyer, **BODY, quote_id=other["quote_id"])
        assert response.status_code == 409 and "no longer available" in response.json()["detail"]
        assert await _balance(client, buyer) == DEPOSIT
