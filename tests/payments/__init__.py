"""Tests of the payments domain, and the helpers its tests share: an operator whose human agent
has earned money through real tasks (submitted, claimed, delivered, paid from escrow)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from dukenet.kit.state import AppState
from tests.factories import claim_and_submit, create_admin, credit, register, submit_task

BUYER_DEPOSIT = 10_000_000


@dataclass
class Market:
    """An admin, a credited buyer, and an operator with one human agent."""

    admin: dict[str, str]
    buyer: dict[str, str]
    operator: dict[str, str]
    operator_id: str
    agent_id: str


async def market(client: httpx.AsyncClient, state: AppState, *, base_price_sat: int) -> Market:
    """Return a fresh market whose agent asks ``base_price_sat`` per complexity point."""
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], BUYER_DEPOSIT)
    operator, operator_headers = await register(client, role="agent")
    response = await client.post(
        "/agents",
        headers=operator_headers,
        json={
            "name": f"human-{uuid.uuid4().hex[:8]}",
            "kind": "human",
            "base_price_sat": base_price_sat,
        },
    )
    assert response.status_code == 201, response.text
    return Market(admin, buyer_headers, operator_headers, operator["id"], response.json()["id"])


async def earn(client: httpx.AsyncClient, market: Market, *, tasks: int = 1) -> int:
    """Run ``tasks`` complexity-1 tasks pinned to the market's agent to a paid settlement
    (the test settings have no dispute window); return the agent's balance as the operator's
    payout balances show it."""
    for _ in range(tasks):
        await deliver(client, market)
    return await agent_balance(client, market)


async def deliver(client: httpx.AsyncClient, market: Market) -> str:
    """Run one complexity-1 task pinned to the market's agent to a delivered success (the
    operator claims it and submits its result over the runner API); return the task id."""
    created = await submit_task(
        client, market.buyer, agent_id=market.agent_id, complexity=1, description="2+2?"
    )
    assert created.status_code == 201, created.text
    task_id = str(created.json()["id"])
    result = await claim_and_submit(client, market.operator, task_id, "4", success=True)
    assert result.status_code in (200, 201), result.text
    return task_id


async def agent_balance(client: httpx.AsyncClient, market: Market) -> int:
    """Return the market's agent's earned balance (sat) from ``GET /payouts/balances``."""
    response = await client.get("/payouts/balances", headers=market.operator)
    assert response.status_code == 200, response.text
    rows = [a for a in response.json()["agents"] if a["agent_id"] == market.agent_id]
    balance: int = rows[0]["balance_sat"]
    return balance


async def request_payout(client: httpx.AsyncClient, market: Market, **body: Any) -> httpx.Response:
    """POST a payout of the market's agent with ``body``'s fields; return the raw response."""
    return await client.post(
        "/payouts", headers=market.operator, json={"agent_id": market.agent_id, **body}
    )
