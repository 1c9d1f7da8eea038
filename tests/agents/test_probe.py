"""The operator's test call of an ``llm`` agent: one probe through the agent's endpoint (the LLM
double on loopback), its answer, latency or error, and nothing written: no task, no money."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from dukenet.kit.state import AppState
from dukenet.ledger.models import LedgerEntry
from dukenet.tasks.models import Task
from tests.factories import create_admin, llm_agent, register
from tests.llm_double import LLMDouble, Reply

KEY = "sk-probe-0123456789abcdefWXYZ"


async def written_rows(state: AppState) -> tuple[int, int]:
    """Return how many tasks and ledger entries the database holds."""
    async with state.sessionmaker() as session:
        tasks = (await session.execute(select(func.count(Task.id)))).scalar_one()
        entries = (await session.execute(select(func.count(LedgerEntry.id)))).scalar_one()
    return tasks, entries


async def send_test_call(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: str, **body: Any
) -> httpx.Response:
    """POST a test call of the agent."""
    return await client.post(f"/agents/{agent_id}/test-call", headers=headers, json=body)


class TestAnswer:
    async def test_the_probe_goes_through_the_endpoint_and_writes_nothing(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        response = await client.post(
            "/agents",
            headers=operator,
            json={
                "name": f"probe-{uuid.uuid4().hex[:8]}",
                "kind": "llm",
                "llm": {
                    "base_url": double.base_url,
                    "model": "test-model",
                    "api_key": KEY,
                    "system_prompt": "You are terse.",
                    "max_tokens": 500,
                },
            },
        )
        assert response.status_code == 201, response.text
        agent = response.json()
        before = await written_rows(state)
        double.script(Reply.completion("OK", model="served-model"))

        answer = await send_test_call(client, operator, agent["id"], prompt="Say OK.", max_tokens=8)

        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["ok"] is True and result["error"] is None
        assert result["text"] == "OK"
        assert result["model"] == "served-model"
        assert result["latency_ms"] > 0
        assert result["usage"]["total_tokens"] == 21
        sent = double.requests[-1]
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.json()["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say OK."},
        ]
        assert sent.json()["max_tokens"] == 8  # the probe's cap, not the agent's 500
        assert await written_rows(state) == before
        assert KEY not in answer.text

    async def test_the_default_probe_needs_no_body(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        answer = await client.post(f"/agents/{agent['id']}/test-call", headers=operator)
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is True
        assert double.requests[-1].json()["max_tokens"] == 32


class TestFailures:
    async def test_an_error_status_is_reported_at_once_without_retries(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        double.script(Reply.error(503), Reply.error(503))
        result = (await send_test_call(client, operator, agent["id"])).json()
        assert result["ok"] is False and result["text"] is None
        assert "503" in result["error"]
        assert len(double.requests) == 1

    async def test_a_hanging_endpoint_ends_at_the_runners_timeout(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        state.settings.llm_timeout_s = 0.5
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        double.script(Reply.hanging())
        started = time.perf_counter()
        result = (await send_test_call(client, operator, agent["id"])).json()
        assert time.perf_counter() - started < 5
        assert result["ok"] is False
        assert "Timeout" in result["error"]
        assert result["latency_ms"] >= 400

    async def test_the_egress_policy_refuses_what_the_runner_would_refuse(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        state.settings.allowed_agent_networks = ""  # loopback is refused again
        result = (await send_test_call(client, operator, agent["id"])).json()
        assert result["ok"] is False
        assert "loopback" in result["error"] or "refused" in result["error"]
        assert double.requests == []

    async def test_a_malformed_answer_is_an_error(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        double.script(Reply.malformed())
        result = (await send_test_call(client, operator, agent["id"])).json()
        assert result["ok"] is False and "malformed" in result["error"]


class TestWhoMay:
    async def test_only_the_agents_operator_test_calls_it(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        _, other = await register(client, role="agent")
        _, buyer = await register(client)
        _, admin = await create_admin(state)
        agent = await llm_agent(client, operator, base_url=double.base_url)
        assert (await send_test_call(client, other, agent["id"])).status_code == 403
        assert (await send_test_call(client, buyer, agent["id"])).status_code == 403
        assert (await send_test_call(client, admin, agent["id"])).status_code == 403
        missing = await send_test_call(client, operator, str(uuid.uuid4()))
        assert missing.status_code == 404
        assert double.requests == []

    async def test_a_human_agent_has_no_endpoint_to_call(self, client: httpx.AsyncClient) -> None:
        _, operator = await register(client, role="agent")
        created = await client.post(
            "/agents", headers=operator, json={"name": f"h-{uuid.uuid4().hex[:8]}", "kind": "human"}
        )
        response = await send_test_call(client, operator, created.json()["id"])
        assert response.status_code == 400
        assert "llm agents" in response.json()["detail"]

    async def test_a_bad_probe_is_422_naming_the_field(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        for body, field in (({"prompt": ""}, "prompt"), ({"max_tokens": 10_000}, "max_tokens")):
            response = await send_test_call(client, operator, agent["id"], **body)
            assert response.status_code == 422
            assert field in response.text
        assert double.requests == []
