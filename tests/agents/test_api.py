"""Registering, showing and switching agents on and off, as operators, buyers and admins see it."""

from __future__ import annotations

import uuid

import httpx

from dukenet.kit.state import AppState
from tests.factories import create_admin, llm_agent, register, replay_agent

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


class TestRegisterAgent:
    async def test_operator_registers_an_llm_agent_at_the_reputation_prior(
        self, client: httpx.AsyncClient
    ) -> None:
        operator, operator_headers = await register(client, role="agent")
        response = await client.post(
            "/agents",
            headers=operator_headers,
            json={
                "name": "my-llm",
                "kind": "llm",
                "llm": {"base_url": UNUSED_ENDPOINT, "model": "tiny", "api_key_env": "TINY_KEY"},
            },
        )
        assert response.status_code == 201, response.text
        agent = response.json()
        assert agent["owner_id"] == operator["id"]
        assert agent["kind"] == "llm"
        assert agent["base_price_sat"] == 100_000  # the market's default base price
        assert agent["success_rate"] == 0.5  # Beta(2, 2) prior
        assert agent["reputation_multiplier"] == 1.2
        assert agent["finished_tasks"] == 0
        assert agent["config"]["model"] == "tiny"
        assert agent["config"]["api_key_env"] == "TINY_KEY"

        # Another user sees the agent on the market, without its configuration.
        _, buyer = await register(client)
        shown = await client.get(f"/agents/{agent['id']}", headers=buyer)
        assert shown.status_code == 200
        assert "config" not in shown.json() and "owner_id" not in shown.json()
        listed = await client.get("/agents", headers=buyer)
        assert [a["id"] for a in listed.json()] == [agent["id"]]
        own = await client.get(f"/agents/{agent['id']}", headers=operator_headers)
        assert own.json()["config"]["base_url"] == UNUSED_ENDPOINT
        unknown = await client.get(f"/agents/{uuid.uuid4()}", headers=buyer)
        assert unknown.status_code == 404
        assert "not found" in unknown.json()["detail"]

    async def test_buyers_cannot_register_agents_and_only_admins_register_replay_agents(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, buyer = await register(client)
        _, operator = await register(client, role="agent")
        _, admin = await create_admin(state)
        llm = {"name": "a", "kind": "llm", "llm": {"base_url": UNUSED_ENDPOINT, "model": "m"}}
        replay = {"name": "r", "kind": "replay", "replay": {"model": "gpt-4-1106-preview"}}

        by_buyer = await client.post("/agents", headers=buyer, json=llm)
        assert by_buyer.status_code == 403
        assert "requires role" in by_buyer.json()["detail"]
        by_operator = await client.post("/agents", headers=operator, json=replay)
        assert by_operator.status_code == 403
        assert by_operator.json()["detail"] == "only admins register replay agents"
        assert (await client.get("/agents", headers=admin)).json() == []

        agent = await replay_agent(client, admin, model="gpt-4-1106-preview")
        assert agent["kind"] == "replay"
        assert agent["config"] == {"dataset": "routerbench", "model": "gpt-4-1106-preview"}

    async def test_invalid_registrations_get_a_clear_4xx(self, client: httpx.AsyncClient) -> None:
        _, operator = await register(client, role="agent")
        await llm_agent(client, operator, base_url=UNUSED_ENDPOINT)
        taken = (await client.get("/agents", headers=operator)).json()[0]["name"]
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"name": "no-config", "kind": "llm"}, 400, "need an 'llm' configuration"),
            (
                {"name": taken, "kind": "llm", "llm": {"base_url": UNUSED_ENDPOINT, "model": "m"}},
                409,
                "is taken",
            ),
            ({"name": "builtin", "kind": "builtin"}, 422, "kind"),
            (
                {
                    "name": "bad name!",
                    "kind": "llm",
                    "llm": {"base_url": UNUSED_ENDPOINT, "model": "m"},
                },
                422,
                "name",
            ),
            (
                {"name": "bad-url", "kind": "llm", "llm": {"base_url": "nope", "model": "m"}},
                422,
                "base_url",
            ),
        ]
        for body, status, message in cases:
            response = await client.post("/agents", headers=operator, json=body)
            assert response.status_code == status, (body, response.text)
            assert message in response.text, (body, response.text)
        assert len((await client.get("/agents", headers=operator)).json()) == 1
        assert (await client.post("/agents", json=cases[0][0])).status_code == 401


class TestEnableDisable:
    async def test_only_the_operator_or_an_admin_takes_an_agent_off_the_market(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, owner = await register(client, role="agent")
        _, rival = await register(client, role="agent")
        _, buyer = await register(client)
        _, admin = await create_admin(state)
        agent = await llm_agent(client, owner, base_url=UNUSED_ENDPOINT)

        denied = await client.post(f"/agents/{agent['id']}/disable", headers=rival)
        assert denied.status_code == 403
        assert (
            await client.post(f"/agents/{agent['id']}/disable", headers=buyer)
        ).status_code == 403

        disabled = await client.post(f"/agents/{agent['id']}/disable", headers=owner)
        assert disabled.status_code == 200
        assert disabled.json()["is_enabled"] is False
        assert (await client.get("/agents", headers=buyer)).json() == []
        assert [a["id"] for a in (await client.get("/agents", headers=admin)).json()] == [
            agent["id"]
        ]

        enabled = await client.post(f"/agents/{agent['id']}/enable", headers=admin)
        assert enabled.status_code == 200
        assert [a["id"] for a in (await client.get("/agents", headers=buyer)).json()] == [
            agent["id"]
        ]
