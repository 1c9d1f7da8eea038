"""The remote runner: the runner protocol over HTTP with an operator's API key, executing an
``llm`` agent against the loopback OpenAI-compatible double."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.remote import RemoteRunner
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble, Reply


async def _operator_key(client: httpx.AsyncClient, operator: dict[str, str]) -> str:
    response = await client.post("/api-keys", headers=operator, json={"name": "laptop runner"})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


async def _setup(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> tuple[str, dict[str, str], dict[str, str]]:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    await llm_agent(client, operator, base_url=double.base_url)
    key = await _operator_key(client, operator)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**7)
    return key, headers, admin


async def test_a_remote_runner_executes_and_settles(
    app: FastAPI, client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    key, buyer, admin = await _setup(client, state, double)
    task = (await submit_task(client, buyer, description="Say hi.")).json()
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(
            transport=transport, base_url="http://test/api/v2", headers={"X-API-Key": key}
        ) as api,
        httpx.AsyncClient() as llm_http,
    ):
        runner = RemoteRunner(api, {AgentKind.LLM: LLMExecutor(llm_http, backoff_s=0.01)})
        assert await runner.run_once() is True
        assert await runner.run_once() is False  # nothing left
    done = (await client.get(f"/tasks/{task['id']}", headers=buyer)).json()
    assert done["status"] == "completed"
    assert done["result"]["text"].startswith("def add")
    assert double.requests[-1].json()["messages"][-1]["content"] == "Say hi."
    check = (await client.get("/admin/ledger/check", headers=admin)).json()
    assert check["ok"]


async def test_a_failing_endpoint_is_released_and_refunded_after_max_attempts(
    app: FastAPI, client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    key, buyer, _ = await _setup(client, state, double)
    double.script(default=Reply.error(500))
    task = (await submit_task(client, buyer)).json()
    before = (await client.get("/users/me", headers=buyer)).json()["balance_sat"]
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(
            transport=transport, base_url="http://test/api/v2", headers={"X-API-Key": key}
        ) as api,
        httpx.AsyncClient() as llm_http,
    ):
        runner = RemoteRunner(
            api, {AgentKind.LLM: LLMExecutor(llm_http, max_retries=0, backoff_s=0.01)}
        )
        for _ in range(state.settings.max_attempts):
            assert await runner.run_once() is True
    done = (await client.get(f"/tasks/{task['id']}", headers=buyer)).json()
    assert done["status"] == "failed" and done["attempts"] == state.settings.max_attempts
    after = (await client.get("/users/me", headers=buyer)).json()["balance_sat"]
    assert after == before + task["price_sat"]


async def test_a_revoked_or_wrong_key_cannot_claim(
    app: FastAPI, client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/api/v2", headers={"X-API-Key": "dk_nope"}
    ) as api:
        runner = RemoteRunner(api, {})
        with pytest.raises(httpx.HTTPStatusError) as err:
            await runner.run_once()
    assert err.value.response.status_code == 401


async def test_a_remote_runner_claims_only_what_its_executors_can_run(
    app: FastAPI,
    client: httpx.AsyncClient,
    state: AppState,
    double: LLMDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``human`` agent's task and an ``llm`` agent's whose key is stored on the server stay
    assigned (not burnt through max_attempts); the agent with a key in the runner's environment
    is executed."""
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    monkeypatch.setenv("DUKENET_TEST_REMOTE_KEY", "sk-remote")
    agents = {}
    for name, extra in (
        ("stored-key", {"kind": "llm", "llm": {"api_key": "sk-stored-on-the-server"}}),
        ("env-key", {"kind": "llm", "llm": {"api_key_env": "DUKENET_TEST_REMOTE_KEY"}}),
        ("a-human", {"kind": "human"}),
    ):
        body: dict[str, object] = {"name": name, "base_price_sat": 1_000, **extra}
        if "llm" in body:
            body["llm"] = {"base_url": double.base_url, "model": "m", **extra["llm"]}  # type: ignore[dict-item]
        response = await client.post("/agents", headers=operator, json=body)
        assert response.status_code == 201, response.text
        agents[name] = response.json()["id"]
    key = await _operator_key(client, operator)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**7)
    tasks = {}
    for name, agent_id in agents.items():
        response = await submit_task(client, headers, agent_id=agent_id)
        assert response.status_code == 201, response.text
        tasks[name] = response.json()["id"]

    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(
            transport=transport, base_url="http://test/api/v2", headers={"X-API-Key": key}
        ) as api,
        httpx.AsyncClient() as llm_http,
    ):
        runner = RemoteRunner(api, {AgentKind.LLM: LLMExecutor(llm_http, backoff_s=0.01)})
        assert await runner.runnable_agents() == [uuid.UUID(agents["env-key"])]
        assert await runner.run_once() is True
        for _ in range(3):
            assert await runner.run_once() is False
    shown = {n: (await client.get(f"/tasks/{t}", headers=headers)).json() for n, t in tasks.items()}
    assert shown["env-key"]["status"] == "completed"
    assert double.requests[0].headers["authorization"] == "Bearer sk-remote"
    for name in ("stored-key", "a-human"):
        assert shown[name]["status"] == "assigned" and shown[name]["attempts"] == 0, name
    assert len(double.requests) == 1


async def test_the_claim_hands_out_only_the_named_agents_and_kinds(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    key, buyer, _ = await _setup(client, state, double)
    await submit_task(client, buyer)
    api_key = {"X-API-Key": key}
    for body in (
        {"agent_ids": []},
        {"agent_ids": [str(uuid.uuid4())]},
        {"kinds": ["human", "replay"]},
    ):
        response = await client.post("/runner/claim", headers=api_key, json=body)
        assert response.status_code == 200 and response.json() is None, body
    response = await client.post("/runner/claim", headers=api_key, json={"kinds": ["llm"]})
    assert response.status_code == 200 and response.json()["attempt"] == 1
