"""A streamed answer across processes: the remote runner reports its pieces to one ``dukenet
serve``, the buyer's ``/v1`` stream is held by another; Redis carries the pieces between them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from dukenet.agents.models import AgentKind
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.remote import RemoteRunner
from tests.conftest import BACKENDS
from tests.events.test_hub import _create_admin, _login, _redis_up, serve_processes
from tests.llm_double import LLMDouble, Reply

PIECES = ["Across ", "two ", "processes ", "as ", "it ", "comes."]


@pytest.fixture
def servers(postgres_database: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two ``dukenet serve`` processes on one PostgreSQL database and Redis, no embedded
    runner, loopback agents allowed."""
    env = {"DUKENET_ALLOWED_AGENT_NETWORKS": "127.0.0.0/8"}
    with serve_processes(postgres_database, tmp_path, env=env) as urls:
        yield urls


def _world(database_url: str, url: str, agent_name: str, agent_url: str) -> tuple[str, str]:
    """Make, through ``url``, an admin (its runner key), a credited buyer (its buyer key) and
    an ``llm`` agent at ``agent_url``; return (buyer key, runner key)."""
    tag = uuid.uuid4().hex[:8]
    asyncio.run(_create_admin(database_url, f"stream-admin-{tag}@example.com"))
    with httpx.Client(base_url=f"{url}/api/v2", timeout=30) as api:
        admin = _login(api, f"stream-admin-{tag}@example.com")
        buyer = _login(api, f"stream-buyer-{tag}@example.com", role="buyer")
        buyer_id = api.get("/users/me", headers=buyer).json()["id"]
        credit = api.post(
            f"/admin/users/{buyer_id}/credit", headers=admin, json={"amount_sat": 10**7}
        )
        assert credit.status_code == 200, credit.text
        agent = api.post(
            "/agents",
            headers=admin,
            json={
                "name": agent_name,
                "kind": "llm",
                "base_price_sat": 100,
                "llm": {"base_url": agent_url, "model": "test-model"},
            },
        )
        assert agent.status_code == 201, agent.text
        buyer_key = api.post("/buyer-keys", headers=buyer, json={"name": "sdk"}).json()["key"]
        runner_key = api.post("/api-keys", headers=admin, json={"name": "runner"}).json()["key"]
    return str(buyer_key), str(runner_key)


@pytest.mark.slow
@pytest.mark.skipif("postgres" not in BACKENDS or not _redis_up(), reason="PostgreSQL + Redis")
async def test_pieces_reported_to_one_process_stream_from_the_other(
    postgres_database: str, servers: list[str], double: LLMDouble
) -> None:
    double.script(default=Reply.streamed(PIECES, delay_s=0.15))
    a_url, b_url = servers
    name = f"streamer-{uuid.uuid4().hex[:8]}"
    buyer_key, runner_key = await asyncio.to_thread(
        _world, postgres_database, a_url, name, double.base_url
    )
    stop = asyncio.Event()
    async with (
        httpx.AsyncClient(base_url=f"{a_url}/api/v2", headers={"X-API-Key": runner_key}) as api,
        httpx.AsyncClient() as llm_http,
    ):
        runner = RemoteRunner(api, {AgentKind.LLM: LLMExecutor(llm_http)}, poll_s=0.05)
        working = asyncio.create_task(runner.run_forever(stop))
        client = openai.AsyncOpenAI(base_url=f"{b_url}/v1", api_key=buyer_key, max_retries=0)
        stream = await client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "Stream across processes."}],
            stream=True,
        )
        pieces, arrived = [], []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                arrived.append(time.monotonic())
        await client.close()
        stop.set()
        await working
    assert "".join(pieces) == "".join(PIECES)
    # relayed through Redis as it came: several chunks over the agent's 0.75 s, not one at the end
    assert len(pieces) >= 3
    assert arrived[-1] - arrived[0] > 0.3
