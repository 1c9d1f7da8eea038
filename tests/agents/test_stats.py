"""Per-agent statistics and the leaderboard, from real executed tasks."""

from __future__ import annotations

import httpx

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble


async def test_stats_and_leaderboard_follow_the_executed_tasks(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    worker = await llm_agent(client, operator, base_url=double.base_url, base_price_sat=500)
    idle = await llm_agent(client, operator, base_url=double.base_url, base_price_sat=900)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**6)
    prices = []
    for _ in range(3):
        task = (await submit_task(client, headers, agent_id=worker["id"], complexity=2)).json()
        prices.append(task["price_sat"])
    async with httpx.AsyncClient() as http:
        runner = Runner(state.sessionmaker, state.settings, {AgentKind.LLM: LLMExecutor(http)})
        for _ in range(3):
            assert await runner.run_once()

    stats = (await client.get(f"/agents/{worker['id']}/stats", headers=headers)).json()
    assert stats["tasks"] == 3 and stats["successes"] == 3 and stats["success_rate"] == 1.0
    assert stats["earnings_sat"] == sum(prices)
    assert stats["latency_p50_ms"] is not None
    assert stats["latency_p50_ms"] <= stats["latency_p95_ms"]
    empty = (await client.get(f"/agents/{idle['id']}/stats", headers=headers)).json()
    assert empty["tasks"] == 0 and empty["success_rate"] is None and empty["earnings_sat"] == 0

    board = (await client.get("/agents/leaderboard", headers=headers)).json()
    assert [row["agent_id"] for row in board] == [worker["id"], idle["id"]]
    assert (await client.get("/agents/leaderboard")).status_code == 401
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/agents/{missing}/stats", headers=headers)).status_code == 404
