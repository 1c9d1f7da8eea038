"""Buyer API keys: created by buyers, spend limits enforced atomically against racing calls,
usage per key and per day/agent."""

from __future__ import annotations

import asyncio

import httpx

from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, register, replay_agent

PRICE_SAT = 1_200  # base 1,000 x complexity 1 x a new agent's multiplier 1.2


async def _world(client: httpx.AsyncClient, state: AppState) -> tuple[dict[str, str], str]:
    _, admin = await create_admin(state)
    buyer_json, buyer = await register(client)
    await credit(client, admin, buyer_json["id"], 1_000_000)
    await replay_agent(client, admin, base_price_sat=1_000)
    return buyer, buyer_json["id"]


def _task(n: int) -> dict[str, object]:
    return {"description": f"What is {n} + {n}?", "complexity": 1}


class TestBuyerKeys:
    async def test_buyers_create_list_and_revoke_keys_that_work_on_the_task_api(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        buyer, _ = await _world(client, state)
        created = await client.post(
            "/buyer-keys", headers=buyer, json={"name": "ci", "daily_limit_sat": 5_000}
        )
        assert created.status_code == 201, created.text
        key = created.json()
        assert key["key"].startswith("dk_") and key["daily_limit_sat"] == 5_000
        headers = {"Authorization": f"Bearer {key['key']}"}
        assert (await client.post("/tasks", headers=headers, json=_task(1))).status_code == 201
        listed = (await client.get("/buyer-keys", headers=buyer)).json()
        assert [k["id"] for k in listed] == [key["id"]]
        assert listed[0]["usage"]["calls"] == 1
        assert listed[0]["usage"]["spent_sat"] == PRICE_SAT
        assert listed[0]["usage"]["spent_today_sat"] == PRICE_SAT
        assert "key" not in listed[0]
        revoked = await client.delete(f"/buyer-keys/{key['id']}", headers=buyer)
        assert revoked.status_code == 204
        assert (await client.post("/tasks", headers=headers, json=_task(2))).status_code == 401

    async def test_another_buyers_key_is_not_found_and_keys_cannot_mint_keys(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        buyer, _ = await _world(client, state)
        _, other = await register(client)
        key = (await client.post("/buyer-keys", headers=buyer, json={"name": "a"})).json()
        assert (await client.get(f"/buyer-keys/{key['id']}", headers=other)).status_code == 404
        patched = await client.patch(
            f"/buyer-keys/{key['id']}", headers=other, json={"total_limit_sat": 1}
        )
        assert patched.status_code == 404
        by_key = {"Authorization": f"Bearer {key['key']}"}
        assert (
            await client.post("/buyer-keys", headers=by_key, json={"name": "b"})
        ).status_code == 401

    async def test_operators_cannot_create_buyer_keys(self, client: httpx.AsyncClient) -> None:
        _, operator = await register(client, role="agent")
        refused = await client.post("/buyer-keys", headers=operator, json={"name": "x"})
        assert refused.status_code == 403


class TestSpendLimits:
    async def test_twenty_racing_calls_against_a_limit_covering_five(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        buyer, buyer_id = await _world(client, state)
        key = (
            await client.post(
                "/buyer-keys",
                headers=buyer,
                json={"name": "race", "total_limit_sat": 5 * PRICE_SAT},
            )
        ).json()
        headers = {"X-API-Key": key["key"]}
        responses = await asyncio.gather(
            *(client.post("/tasks", headers=headers, json=_task(n)) for n in range(20))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] * 5 + [402] * 15, [r.text for r in responses if r.status_code >= 500]
        assert "spend limit" in next(r for r in responses if r.status_code == 402).json()["detail"]
        _, admin = await create_admin(state)
        check = (await client.get("/admin/ledger/check", headers=admin)).json()
        assert check["ok"] is True, check
        profile = (await client.get("/users/me", headers=buyer)).json()
        assert profile["balance_sat"] == 1_000_000 - 5 * PRICE_SAT
        usage = (await client.get(f"/buyer-keys/{key['id']}", headers=buyer)).json()["usage"]
        assert usage["calls"] == 5 and usage["spent_sat"] == 5 * PRICE_SAT
        assert buyer_id

    async def test_a_refund_frees_the_budget_and_the_daily_limit_applies(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        buyer, _ = await _world(client, state)
        key = (
            await client.post(
                "/buyer-keys", headers=buyer, json={"name": "d", "daily_limit_sat": PRICE_SAT}
            )
        ).json()
        headers = {"X-API-Key": key["key"]}
        first = await client.post("/tasks", headers=headers, json=_task(1))
        assert first.status_code == 201
        assert (await client.post("/tasks", headers=headers, json=_task(2))).status_code == 402
        cancelled = await client.post(f"/tasks/{first.json()['id']}/cancel", headers=buyer)
        assert cancelled.status_code == 200
        assert (await client.post("/tasks", headers=headers, json=_task(3))).status_code == 201
        # a session (no key) is not limited by the key
        assert (await client.post("/tasks", headers=buyer, json=_task(4))).status_code == 201
        raised = await client.patch(
            f"/buyer-keys/{key['id']}", headers=buyer, json={"daily_limit_sat": None}
        )
        assert raised.json()["daily_limit_sat"] is None
        assert (await client.post("/tasks", headers=headers, json=_task(5))).status_code == 201


class TestUsage:
    async def test_usage_by_day_and_agent_and_key(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        buyer, _ = await _world(client, state)
        key = (await client.post("/buyer-keys", headers=buyer, json={"name": "u"})).json()
        for n in range(3):
            assert (
                await client.post("/tasks", headers={"X-API-Key": key["key"]}, json=_task(n))
            ).status_code == 201
        assert (await client.post("/tasks", headers=buyer, json=_task(9))).status_code == 201
        report = (await client.get("/usage", headers=buyer)).json()
        assert report["group_by"] == ["day", "agent"]
        assert len(report["rows"]) == 1
        row = report["rows"][0]
        assert row["calls"] == 4 and row["spent_sat"] == 4 * PRICE_SAT and row["agent_name"]
        assert report["total"]["calls"] == 4
        by_key = (await client.get("/usage", headers=buyer, params={"group_by": "api_key"})).json()
        calls = {r["api_key_id"]: r["calls"] for r in by_key["rows"]}
        assert calls == {key["id"]: 3, None: 1}
        bad = await client.get("/usage", headers=buyer, params={"group_by": "colour"})
        assert bad.status_code == 400
