"""Tasks through the API: creation (routing, pricing, escrow), visibility, bad input, and the
runner protocol (claim, heartbeat, result) as buyers and operators see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.kit.state import AppState
from dukenet.ledger.service import agent_name, escrow_name
from tests.factories import create_admin, credit, llm_agent, register, replay_agent, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
DEPOSIT = 10_000
PRICE = 3_600  # 1,000 sat base x complexity 3 x 1.2 (a new agent's multiplier)


@dataclass
class Market:
    """An admin, a credited buyer, and an operator with one LLM agent (base price 1,000 sat)."""

    admin: dict[str, str]
    buyer_id: str
    buyer: dict[str, str]
    operator: dict[str, str]
    agent: dict[str, Any]


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState) -> Market:
    """A small market with one agent and a buyer holding ``DEPOSIT`` sat."""
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    return Market(admin, buyer["id"], buyer_headers, operator, agent)


async def _claim(
    client: httpx.AsyncClient, operator: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post("/runner/claim", headers=operator, json=body)
    assert response.status_code == 200, response.text
    claim: dict[str, Any] = response.json()
    return claim


def _result(claim: dict[str, Any], *, success: bool = True, key: str = "k1") -> dict[str, Any]:
    return {
        "lease_token": claim["lease_token"],
        "idempotency_key": key,
        "text": "def add(a, b): return a + b",
        "success": success,
    }


class TestCreateTask:
    async def test_task_is_routed_priced_and_escrowed(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        response = await submit_task(client, market.buyer, complexity=3)
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["status"] == "assigned"
        assert task["agent_id"] == market.agent["id"]
        assert task["price_sat"] == PRICE
        assert task["attempts"] == 0 and task["result"] is None
        assert task["routing"]["agent_id"] == market.agent["id"]
        assert task["routing"]["price_sat"] == PRICE
        [hold] = task["transactions"]
        assert hold["kind"] == "escrow_hold"
        assert {e["account_name"]: e["amount_sat"] for e in hold["entries"]} == {
            f"wallet:{market.buyer_id}": -PRICE,
            f"escrow:{task['id']}": PRICE,
        }
        assert await wallet_balance(client, market.buyer) == DEPOSIT - PRICE
        assert await account_balance(sessionmaker, escrow_name(uuid.UUID(task["id"]))) == PRICE
        await assert_ledger_balanced(client, market.admin, sessionmaker)

    async def test_same_idempotency_key_creates_one_task_and_charges_once(
        self, client: httpx.AsyncClient, state: AppState, market: Market
    ) -> None:
        first = await submit_task(client, market.buyer, idempotency_key="order-1")
        again = await submit_task(client, market.buyer, idempotency_key="order-1")
        assert first.status_code == 201, first.text
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        assert len(again.json()["transactions"]) == 1
        assert await wallet_balance(client, market.buyer) == DEPOSIT - PRICE
        listed = (await client.get("/tasks", headers=market.buyer)).json()
        assert listed["total"] == 1

        # Keys belong to their buyer: another buyer's "order-1" is a task of its own.
        other, other_headers = await register(client)
        await credit(client, market.admin, other["id"], DEPOSIT)
        theirs = await submit_task(client, other_headers, idempotency_key="order-1")
        assert theirs.status_code == 201
        assert theirs.json()["id"] != first.json()["id"]
        await assert_ledger_balanced(client, market.admin)

    async def test_insufficient_balance_is_402_and_creates_nothing(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        poor, poor_headers = await register(client)
        await credit(client, market.admin, poor["id"], PRICE - 1)
        response = await submit_task(client, poor_headers, complexity=3)
        assert response.status_code == 402
        assert "insufficient balance" in response.json()["detail"]
        assert await wallet_balance(client, poor_headers) == PRICE - 1
        assert (await client.get("/tasks", headers=poor_headers)).json()["total"] == 0

        _, broke = await register(client)  # never credited: no wallet at all
        assert (await submit_task(client, broke)).status_code == 402
        assert (await client.get("/tasks", headers=market.admin)).json()["total"] == 0
        await assert_ledger_balanced(client, market.admin, sessionmaker)

    async def test_max_price_below_every_agent_or_no_agent_at_all_is_400(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        await replay_agent(client, market.admin, base_price_sat=5_000)
        too_low = await submit_task(client, market.buyer, complexity=3, max_price_sat=PRICE - 1)
        assert too_low.status_code == 400
        assert f"the cheapest asks {PRICE} sat" in too_low.json()["detail"]
        assert await wallet_balance(client, market.buyer) == DEPOSIT

        # Only the 1,000-sat agent is within budget, so routing cannot pick the 5,000-sat one.
        within = await submit_task(client, market.buyer, complexity=3, max_price_sat=PRICE)
        assert within.status_code == 201, within.text
        assert within.json()["agent_id"] == market.agent["id"]
        assert within.json()["price_sat"] == PRICE

        for agent in (await client.get("/agents", headers=market.admin)).json():
            await client.post(f"/agents/{agent['id']}/disable", headers=market.admin)
        empty_market = await submit_task(client, market.buyer)
        assert empty_market.status_code == 400
        assert empty_market.json()["detail"] == "no enabled agent can take this task"

    async def test_pinned_agent_must_exist_and_be_enabled(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        other = await replay_agent(client, market.admin, base_price_sat=2_000)
        pinned = await submit_task(client, market.buyer, complexity=1, agent_id=other["id"])
        assert pinned.status_code == 201
        assert pinned.json()["agent_id"] == other["id"]
        assert pinned.json()["price_sat"] == 2_400

        unknown = str(uuid.uuid4())
        missing = await submit_task(client, market.buyer, agent_id=unknown)
        assert missing.status_code == 404
        assert missing.json()["detail"] == f"agent {unknown} not found or disabled"
        await client.post(f"/agents/{other['id']}/disable", headers=market.admin)
        disabled = await submit_task(client, market.buyer, agent_id=other["id"])
        assert disabled.status_code == 404
        # Disabling the agent refunded the task pinned to it; the refused one charged nothing.
        assert await wallet_balance(client, market.buyer) == DEPOSIT

    async def test_malformed_or_unauthorised_creation_is_refused_and_creates_nothing(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        cases: dict[str, dict[str, Any]] = {
            "complexity 0": {"complexity": 0},
            "complexity 11": {"complexity": 11},
            "empty description": {"description": ""},
            "blank description": {"description": "  \n\t "},
            "unknown field": {"priority": "high"},
            "max price 0": {"max_price_sat": 0},
        }
        for case, fields in cases.items():
            response = await submit_task(client, market.buyer, **fields)
            assert response.status_code == 422, (case, response.text)
            assert response.json()["detail"][0]["msg"], case
        blank = await submit_task(client, market.buyer, description="   ")
        assert "description must not be blank" in blank.text

        anonymous = await client.post("/tasks", json={"description": "hi", "complexity": 1})
        assert anonymous.status_code == 401
        by_operator = await submit_task(client, market.operator)
        assert by_operator.status_code == 403
        assert by_operator.json()["detail"] == "only buyers create tasks"
        assert (await client.get("/tasks", headers=market.admin)).json()["total"] == 0
        assert await wallet_balance(client, market.buyer) == DEPOSIT


class TestTaskVisibility:
    async def test_another_buyers_task_is_neither_shown_nor_listed(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task = (await submit_task(client, market.buyer)).json()
        _, other = await register(client)

        hidden = await client.get(f"/tasks/{task['id']}", headers=other)
        absent_id = uuid.uuid4()
        absent = await client.get(f"/tasks/{absent_id}", headers=other)
        assert hidden.status_code == absent.status_code == 404  # not 403: existence not revealed
        assert hidden.json()["detail"] == f"task {task['id']} not found"
        assert absent.json()["detail"] == f"task {absent_id} not found"
        theirs = (await client.get("/tasks", headers=other)).json()
        assert theirs["total"] == 0 and theirs["items"] == []

        mine = (await client.get("/tasks", headers=market.buyer)).json()
        assert [t["id"] for t in mine["items"]] == [task["id"]]
        assigned = await client.get("/tasks", headers=market.buyer, params={"status": "assigned"})
        assert assigned.json()["total"] == 1
        done = await client.get("/tasks", headers=market.buyer, params={"status": "completed"})
        assert done.json()["total"] == 0
        assert (await client.get(f"/tasks/{task['id']}", headers=market.admin)).status_code == 200


class TestRunnerProtocol:
    async def test_successful_result_completes_the_task_and_pays_the_agent(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        task = (await submit_task(client, market.buyer)).json()
        claim = await _claim(client, market.operator, runner="r1")
        assert claim["task_id"] == task["id"]
        assert claim["agent_id"] == market.agent["id"]
        assert claim["attempt"] == 1
        assert claim["description"] == task["description"]
        executing = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert executing["status"] == "executing" and executing["attempts"] == 1

        beat = await client.post(
            f"/runner/tasks/{task['id']}/heartbeat",
            headers=market.operator,
            params={"lease_token": claim["lease_token"]},
        )
        assert beat.status_code == 200 and beat.json()["status"] == "executing"

        submitted = await client.post(
            f"/runner/tasks/{task['id']}/result", headers=market.operator, json=_result(claim)
        )
        assert submitted.status_code == 201, submitted.text
        done = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert done["status"] == "completed" and done["finished_at"] is not None
        assert done["result"]["text"] == "def add(a, b): return a + b"
        assert [t["kind"] for t in done["transactions"]] == ["escrow_hold", "escrow_release"]
        assert (
            await account_balance(sessionmaker, agent_name(uuid.UUID(claim["agent_id"]))) == PRICE
        )
        assert await account_balance(sessionmaker, escrow_name(uuid.UUID(task["id"]))) == 0
        assert await wallet_balance(client, market.buyer) == DEPOSIT - PRICE
        assert (await client.post("/runner/claim", headers=market.operator, json={})).json() is None
        await assert_ledger_balanced(client, market.admin, sessionmaker)

    async def test_double_submission_returns_the_first_result_and_pays_once(
        self,
        client: httpx.AsyncClient,
        market: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        task = (await submit_task(client, market.buyer)).json()
        claim = await _claim(client, market.operator)
        url = f"/runner/tasks/{task['id']}/result"
        first = await client.post(url, headers=market.operator, json=_result(claim, key="same"))
        retry = await client.post(url, headers=market.operator, json=_result(claim, key="same"))
        assert first.status_code == 201
        assert retry.status_code == 200
        assert retry.json() == first.json()

        late = await client.post(url, headers=market.operator, json=_result(claim, key="other"))
        assert late.status_code == 409
        assert "not leased to you (status completed)" in late.json()["detail"]

        agent_account = agent_name(uuid.UUID(claim["agent_id"]))
        assert await account_balance(sessionmaker, agent_account) == PRICE
        done = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert [t["kind"] for t in done["transactions"]] == ["escrow_hold", "escrow_release"]
        assert await wallet_balance(client, market.buyer) == DEPOSIT - PRICE
        await assert_ledger_balanced(client, market.admin, sessionmaker)

    async def test_only_the_agents_operator_with_its_lease_token_claims_and_submits(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task = (await submit_task(client, market.buyer)).json()
        _, rival = await register(client, role="agent")
        await llm_agent(client, rival, base_url=UNUSED_ENDPOINT)

        pinned = await client.post(
            "/runner/claim", headers=rival, json={"agent_id": market.agent["id"]}
        )
        assert pinned.status_code == 403
        assert "is not yours" in pinned.json()["detail"]
        assert (await client.post("/runner/claim", headers=rival, json={})).json() is None
        assert (
            await client.post("/runner/claim", headers=market.buyer, json={})
        ).status_code == 403

        claim = await _claim(client, market.operator, agent_id=market.agent["id"])
        base = f"/runner/tasks/{task['id']}"
        token = {"lease_token": claim["lease_token"]}
        # Another operator's task answers as an unknown one would: its existence is not revealed.
        unknown = uuid.uuid4()
        for action, kwargs in (
            ("result", {"json": _result(claim)}),
            ("heartbeat", {"params": token}),
            ("release", {"params": token}),
        ):
            stolen = await client.post(f"{base}/{action}", headers=rival, **kwargs)
            absent = await client.post(f"/runner/tasks/{unknown}/{action}", headers=rival, **kwargs)
            assert stolen.status_code == absent.status_code == 404, action
            assert stolen.json()["detail"] == f"task {task['id']} not found"
            assert absent.json()["detail"] == f"task {unknown} not found"

        # The owner, too, must present the lease token it was given.
        forged = {**_result(claim), "lease_token": str(uuid.uuid4())}
        wrong = await client.post(f"{base}/result", headers=market.operator, json=forged)
        assert wrong.status_code == 409
        assert "is not leased to you (status executing)" in wrong.json()["detail"]
        missing = {k: v for k, v in _result(claim).items() if k != "lease_token"}
        no_token = await client.post(f"{base}/result", headers=market.operator, json=missing)
        assert no_token.status_code == 422
        forged_beat = {"lease_token": str(uuid.uuid4())}
        beat = await client.post(f"{base}/heartbeat", headers=market.operator, params=forged_beat)
        assert beat.status_code == 409

        status = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()["status"]
        assert status == "executing"
        assert await wallet_balance(client, market.buyer) == DEPOSIT - PRICE
        done = await client.post(f"{base}/result", headers=market.operator, json=_result(claim))
        assert done.status_code == 201
        # Replaying the owner's idempotency key does not hand the result to someone else.
        replayed = await client.post(f"{base}/result", headers=rival, json=_result(claim))
        assert replayed.status_code == 404, replayed.text
        assert replayed.json()["detail"] == f"task {task['id']} not found"


async def test_prometheus_metrics_count_requests_transitions_and_settlements(
    client: httpx.AsyncClient, state: AppState
) -> None:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url="http://127.0.0.1:9/v1")
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**6)
    task = (await submit_task(client, headers)).json()
    claim = (await client.post("/runner/claim", headers=operator, json={})).json()
    assert claim["task_id"] == task["id"] and claim["agent_id"] == agent["id"]
    submitted = await client.post(
        f"/runner/tasks/{task['id']}/result",
        headers=operator,
        json={
            "lease_token": claim["lease_token"],
            "idempotency_key": "k1",
            "text": "done",
            "success": True,
        },
    )
    assert submitted.status_code == 201
    text = (await client.get("http://test/metrics")).text
    assert 'dukenet_task_transitions_total{status="assigned"} 1.0' in text
    assert 'dukenet_task_transitions_total{status="completed"} 1.0' in text
    assert f'dukenet_settled_sat_total{{direction="release"}} {float(task["price_sat"])}' in text
    assert 'route="/api/v2/tasks",status="201"' in text
    assert "dukenet_routing_seconds_count 1.0" in text


async def test_tasks_are_listed_by_agent_and_creation_time(
    client: httpx.AsyncClient, market: Market
) -> None:
    other = await llm_agent(client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=500)
    mine = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
    theirs = (await submit_task(client, market.buyer, agent_id=other["id"])).json()

    async def listed(**params: str) -> httpx.Response:
        return await client.get("/tasks", headers=market.buyer, params=params)

    by_agent = (await listed(agent_id=other["id"])).json()
    assert [t["id"] for t in by_agent["items"]] == [theirs["id"]] and by_agent["total"] == 1
    window = await listed(created_from=mine["created_at"], created_to=theirs["created_at"])
    assert [t["id"] for t in window.json()["items"]] == [mine["id"]]
    later = await listed(created_from="2999-01-01T00:00:00Z")
    assert later.json()["total"] == 0
    backwards = await listed(created_from=theirs["created_at"], created_to=mine["created_at"])
    assert backwards.status_code == 400 and "before" in backwards.json()["detail"]
    naive = await listed(created_from="2026-01-01T00:00:00")
    assert naive.status_code == 400 and "timezone" in naive.json()["detail"]
