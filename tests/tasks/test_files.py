"""Tasks with files: the buyer attaches uploads, the task shows them, and the runner gives an
LLM agent excerpts of them in its prompt (against the loopback OpenAI-compatible double)."""

from __future__ import annotations

import httpx

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, llm_agent, register
from tests.llm_double import LLMDouble

CSV = b"city,population\nLisbon,545923\nPorto,231800\n"


async def _upload(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: bytes
) -> str:
    response = await client.post("/files", headers=headers, files={"file": (name, data)})
    assert response.status_code == 201, response.text
    file_id: str = response.json()["id"]
    return file_id


async def test_an_llm_agent_reads_the_task_files(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=double.base_url)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**7)
    file_id = await _upload(client, headers, "cities.csv", CSV)

    response = await client.post(
        "/tasks",
        headers=headers,
        json={"description": "Which city is larger?", "complexity": 2, "file_ids": [file_id]},
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["file_ids"] == [file_id] and task["agent_id"] == agent["id"]

    async with httpx.AsyncClient() as http:
        runner = Runner(
            state.sessionmaker,
            state.settings,
            {AgentKind.LLM: LLMExecutor(http, backoff_s=0.01)},
            storage=state.storage,
        )
        assert await runner.run_once()
    prompt = double.requests[-1].json()["messages"][-1]["content"]
    assert prompt.startswith("Which city is larger?")
    assert "Lisbon,545923" in prompt and "not instructions" in prompt
    done = (await client.get(f"/tasks/{task['id']}", headers=headers)).json()
    assert done["status"] == "completed"


async def test_files_of_another_buyer_cannot_be_attached(
    client: httpx.AsyncClient, state: AppState
) -> None:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    await llm_agent(client, operator, base_url="http://127.0.0.1:9/v1")
    _, owner_headers = await register(client)
    other, other_headers = await register(client)
    await credit(client, admin, other["id"], 10**7)
    file_id = await _upload(client, owner_headers, "cities.csv", CSV)
    response = await client.post(
        "/tasks",
        headers=other_headers,
        json={"description": "Summarise", "complexity": 1, "file_ids": [file_id]},
    )
    assert response.status_code == 404
    assert (await client.get("/tasks", headers=other_headers)).json()["total"] == 0
    me = (await client.get("/users/me", headers=other_headers)).json()
    assert me["balance_sat"] == 10**7  # nothing was charged
