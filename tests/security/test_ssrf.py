"""SSRF: an operator cannot make the server call its own network through an ``llm`` agent's
``base_url``, neither at registration, nor by PATCH, nor at call time (after DNS resolution)."""

from __future__ import annotations

import httpx

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.kit.netguard import EgressPolicy, guarded_client
from dukenet.kit.state import AppState
from dukenet.main import build_executors
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble

ATTACKS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://10.0.0.1/v1",
    "http://user:pass@10.0.0.1/v1",
    "http://[::1]:11434/v1",
    "http://localhost:11434/v1",
    "http://0.0.0.0:8000/v1",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://127.0.0.1:8000/api/v2",  # the API itself, although loopback is allowed here
]


def _llm(base_url: str) -> dict[str, str]:
    return {"base_url": base_url, "model": "m"}


class TestStoredBaseUrl:
    async def test_registration_refuses_local_and_metadata_targets(
        self, client: httpx.AsyncClient
    ) -> None:
        _, operator = await register(client, role="agent")
        for base_url in ATTACKS:
            response = await client.post(
                "/agents",
                headers=operator,
                json={"name": "x", "kind": "llm", "llm": _llm(base_url)},
            )
            assert response.status_code == 422, (base_url, response.text)
            assert response.json()["detail"].startswith("llm.base_url: ")
        assert (await client.get("/agents", headers=operator)).json() == []

    async def test_patch_refuses_them_and_keeps_the_old_url(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=double.base_url)
        for base_url in ATTACKS:
            response = await client.patch(
                f"/agents/{agent['id']}", headers=operator, json={"llm": {"base_url": base_url}}
            )
            assert response.status_code == 422, (base_url, response.text)
            assert "llm.base_url" in response.json()["detail"]
        shown = (await client.get(f"/agents/{agent['id']}", headers=operator)).json()
        assert shown["config"]["base_url"] == double.base_url

    async def test_loopback_is_refused_without_an_allowed_network(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        state.settings = state.settings.model_copy(update={"allowed_agent_networks": ""})
        response = await client.post(
            "/agents",
            headers=operator,
            json={"name": "local", "kind": "llm", "llm": _llm(double.base_url)},
        )
        assert response.status_code == 422
        assert "loopback address" in response.json()["detail"]


class TestCallTime:
    async def test_the_runner_never_connects_to_a_target_the_policy_refuses_now(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings, double: LLMDouble
    ) -> None:
        # Registered while loopback was allowed (or a name that resolved elsewhere then: DNS
        # rebinding); the runner's client checks the address it connects to.
        _, admin = await create_admin(state)
        _, operator = await register(client, role="agent")
        await llm_agent(client, operator, base_url=double.base_url)
        buyer, buyer_headers = await register(client)
        await credit(client, admin, buyer["id"], 10_000)
        task = (await submit_task(client, buyer_headers)).json()

        async with guarded_client(EgressPolicy(), timeout=5) as http:
            runner = Runner(state.sessionmaker, settings, build_executors(http))
            assert await runner.run_once() is True
        assert double.requests == []
        shown = (await client.get(f"/tasks/{task['id']}", headers=buyer_headers)).json()
        assert shown["attempts"] == 1
        assert shown["status"] in {"assigned", "failed"}
        assert "loopback address" in str(shown)
        assert AgentKind.LLM in build_executors(http)
