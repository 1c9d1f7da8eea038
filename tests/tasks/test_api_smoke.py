"""Smoke test of the fixtures: a buyer's task is routed, priced and held in escrow."""

from __future__ import annotations

import httpx

from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, register, replay_agent, submit_task


async def test_task_is_assigned_and_escrowed(client: httpx.AsyncClient, state: AppState) -> None:
    _, admin = await create_admin(state)
    agent = await replay_agent(client, admin, base_price_sat=1_000)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 100_000)
    response = await submit_task(client, headers, complexity=3)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "assigned"
    assert task["agent_id"] == agent["id"]
    # A new agent sits at the Beta(2, 2) prior, 0.5, hence the lowest tier, 1.2.
    assert task["price_sat"] == 1_000 * 3 * 1.2
