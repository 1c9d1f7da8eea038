"""An agent operator reads their agents and the tasks those agents ran, with how each ended."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from dukenet.config import Settings
from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, register, submit_task

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Keep delivered results open so the buyer can reject them."""
    return settings.model_copy(update={"dispute_window_s": 3600})


async def _human_agent(client: httpx.AsyncClient, operator: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/agents",
        headers=operator,
        json={"name": f"human-{uuid.uuid4().hex[:6]}", "kind": "human", "base_price_sat": 100},
    )
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def _answer(
    client: httpx.AsyncClient, operator: dict[str, str], task_id: str, *, success: bool = True
) -> None:
    claim = await client.post("/runner/claim", headers=operator, json={"task_id": task_id})
    assert claim.status_code == 200, claim.text
    body = claim.json()
    result = await client.post(
        f"/runner/tasks/{task_id}/result",
        headers=operator,
        json={
            "lease_token": body["lease_token"],
            "idempotency_key": f"{task_id}:1",
            "text": "the answer",
            "success": success,
        },
    )
    assert result.status_code == 201, result.text


class TestOperatorTasks:
    async def test_operator_sees_outcome_rating_and_rejection_of_their_agents_tasks(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer, buyer_headers = await register(client)
        await credit(client, admin, buyer["id"], 10**7)
        _, operator = await register(client, role="agent")
        agent = await _human_agent(client, operator)
        disabled = await _human_agent(client, operator)
        await client.post(f"/agents/{disabled['id']}/disable", headers=operator)

        rated = (await submit_task(client, buyer_headers, agent_id=agent["id"])).json()
        rejected = (await submit_task(client, buyer_headers, agent_id=agent["id"])).json()
        queued = (await submit_task(client, buyer_headers, agent_id=agent["id"])).json()
        for task in (rated, rejected):
            await _answer(client, operator, task["id"])
        accept = await client.post(f"/tasks/{rated['id']}/accept", headers=buyer_headers)
        assert accept.status_code == 200, accept.text
        feedback = await client.put(
            f"/tasks/{rated['id']}/feedback", headers=buyer_headers, json={"rating": 4}
        )
        assert feedback.status_code == 200, feedback.text
        reject = await client.post(
            f"/tasks/{rejected['id']}/reject", headers=buyer_headers, json={"reason": "wrong"}
        )
        assert reject.status_code == 200, reject.text

        mine = await client.get("/operator/agents", headers=operator)
        assert {a["id"] for a in mine.json()} == {agent["id"], disabled["id"]}

        page = await client.get("/operator/tasks", headers=operator)
        assert page.status_code == 200
        assert page.json()["total"] == 3
        by_id = {t["id"]: t for t in page.json()["items"]}
        assert by_id[rated["id"]]["status"] == "completed"
        assert by_id[rated["id"]]["success"] is True and by_id[rated["id"]]["rating"] == 4
        assert by_id[rated["id"]]["quality"] == pytest.approx(0.75)
        assert by_id[rejected["id"]]["status"] == "rejected"
        assert by_id[rejected["id"]]["rejection_reason"] == "wrong"
        assert by_id[rejected["id"]]["success"] is False
        assert by_id[queued["id"]]["success"] is None and by_id[queued["id"]]["rating"] is None
        assert "buyer_id" not in by_id[queued["id"]]

        one = await client.get(
            "/operator/tasks",
            headers=operator,
            params={"agent_id": agent["id"], "status": "rejected", "limit": 1},
        )
        assert [t["id"] for t in one.json()["items"]] == [rejected["id"]]

    async def test_other_operators_agent_is_404_and_buyers_are_403(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, operator = await register(client, role="agent")
        _, other = await register(client, role="agent")
        _, buyer = await register(client)
        agent = await _human_agent(client, operator)
        theirs = await client.get(
            "/operator/tasks", headers=other, params={"agent_id": agent["id"]}
        )
        assert theirs.status_code == 404
        assert (await client.get("/operator/tasks", headers=other)).json()["total"] == 0
        assert (await client.get("/operator/agents", headers=other)).json() == []
        assert (await client.get("/operator/tasks", headers=buyer)).status_code == 403
