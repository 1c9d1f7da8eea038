"""Quote before you buy, excluded agents, and cancelling a queued task with a refund."""

from __future__ import annotations

import httpx

from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.ledger import assert_ledger_balanced

UNUSED = "http://127.0.0.1:9/v1"


async def _market(
    client: httpx.AsyncClient, state: AppState
) -> tuple[dict[str, str], dict[str, str], dict[str, str], list[dict[str, object]]]:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agents = [
        await llm_agent(client, operator, base_url=UNUSED, base_price_sat=price)
        for price in (1_000, 2_000, 3_000)
    ]
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 1_000_000)
    return admin, operator, headers, agents


class TestQuote:
    async def test_a_quote_names_agent_price_and_alternatives_and_creates_nothing(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, _, buyer, agents = await _market(client, state)
        body = {"description": "Translate this.", "complexity": 2}
        quote = await client.post("/tasks/quote", headers=buyer, json=body)
        assert quote.status_code == 200, quote.text
        q = quote.json()
        # Before any model every agent sits at the prior, so the cheapest wins.
        assert q["agent_id"] == agents[0]["id"] and q["price_sat"] == 1_000 * 2 * 1.2
        assert q["eligible_agents"] == 3 and len(q["alternatives"]) == 2
        assert 0 < q["p_success"] < 1
        assert (await client.get("/tasks", headers=buyer)).json()["total"] == 0
        assert (await client.get("/users/me", headers=buyer)).json()["balance_sat"] == 1_000_000

    async def test_excluded_agents_are_not_quoted_nor_assigned(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, _, buyer, agents = await _market(client, state)
        excluded = [agents[0]["id"], agents[1]["id"]]
        body = {"description": "Translate this.", "complexity": 2, "exclude_agent_ids": excluded}
        quote = (await client.post("/tasks/quote", headers=buyer, json=body)).json()
        assert quote["agent_id"] == agents[2]["id"] and quote["alternatives"] == []
        task = (await submit_task(client, buyer, exclude_agent_ids=excluded)).json()
        assert task["agent_id"] == agents[2]["id"]
        everything = [a["id"] for a in agents]
        refused = await client.post(
            "/tasks/quote", headers=buyer, json={**body, "exclude_agent_ids": everything}
        )
        assert refused.status_code == 400 and "excluded" in refused.json()["detail"]

    async def test_quote_needs_a_token_and_valid_input(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, _, buyer, _ = await _market(client, state)
        body = {"description": "x", "complexity": 2}
        assert (await client.post("/tasks/quote", json=body)).status_code == 401
        bad = {"description": "x", "complexity": 11}
        assert (await client.post("/tasks/quote", headers=buyer, json=bad)).status_code == 422
        cheap = {**body, "max_price_sat": 10}
        assert (await client.post("/tasks/quote", headers=buyer, json=cheap)).status_code == 400


class TestCancel:
    async def test_a_queued_task_is_cancelled_and_refunded(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin, _, buyer, _ = await _market(client, state)
        task = (await submit_task(client, buyer)).json()
        assert (await client.get("/users/me", headers=buyer)).json()["balance_sat"] < 1_000_000
        cancelled = await client.post(f"/tasks/{task['id']}/cancel", headers=buyer)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert (await client.get("/users/me", headers=buyer)).json()["balance_sat"] == 1_000_000
        again = await client.post(f"/tasks/{task['id']}/cancel", headers=buyer)
        assert again.status_code == 409
        await assert_ledger_balanced(client, admin)

    async def test_an_executing_task_cannot_be_cancelled(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, operator, buyer, _ = await _market(client, state)
        task = (await submit_task(client, buyer)).json()
        claim = await client.post("/runner/claim", headers=operator, json={})
        assert claim.json()["task_id"] == task["id"]
        refused = await client.post(f"/tasks/{task['id']}/cancel", headers=buyer)
        assert refused.status_code == 409 and "executing" in refused.json()["detail"]

    async def test_another_buyer_cannot_cancel(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, _, buyer, _ = await _market(client, state)
        task = (await submit_task(client, buyer)).json()
        _, stranger = await register(client)
        assert (
            await client.post(f"/tasks/{task['id']}/cancel", headers=stranger)
        ).status_code == 404
        detail = (await client.get(f"/tasks/{task['id']}", headers=buyer)).json()
        assert detail["status"] == "assigned"
