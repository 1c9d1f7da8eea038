"""Per-agent statistics and the leaderboard, from real executed tasks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.market import reputation
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble
from tests.payments import Market, deliver, market


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


async def rated(client: httpx.AsyncClient, world: Market, rating: int | None) -> None:
    """Run one task pinned to the world's agent to a delivered success (the agent's report),
    then, if given, the buyer's 1-5 star rating, which relabels it ((r - 1) / 4)."""
    task_id = await deliver(client, world)
    if rating is not None:
        response = await client.put(
            f"/tasks/{task_id}/feedback", headers=world.buyer, json={"rating": rating}
        )
        assert response.status_code == 200, response.text


async def stats_and_series(
    client: httpx.AsyncClient, world: Market
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GET the agent's stats card and its daily series over the last 7 days (as its operator)."""
    stats = await client.get(f"/agents/{world.agent_id}/stats", headers=world.operator)
    assert stats.status_code == 200, stats.text
    series = await client.get(
        f"/agents/{world.agent_id}/series", headers=world.operator, params={"days": 7}
    )
    assert series.status_code == 200, series.text
    return stats.json(), series.json()["points"]


class TestSuccessDefinition:
    async def test_stats_count_the_current_label_as_the_series_and_reputation_do(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=700)
        # the agent reports success on all four; the buyer relabels three: 1.0, 0.5, 0.0
        for rating in (5, 3, 1, None):
            await rated(client, world, rating)

        stats, points = await stats_and_series(client, world)
        assert (stats["tasks"], stats["successes"]) == (4, 3)  # 0.5 passes the 0.5 threshold
        assert sum(p["successes"] for p in points) == stats["successes"]
        assert sum(p["outcomes"] for p in points) == stats["tasks"]

        # a stricter threshold (DUKENET_SUCCESS_THRESHOLD=0.6 at the next start): the outcome
        # rated 3 stars (quality 0.5) stops counting everywhere, though it was stored a success
        state.settings = state.settings.model_copy(update={"success_threshold": 0.6})
        stats, points = await stats_and_series(client, world)
        assert (stats["tasks"], stats["successes"]) == (4, 2)
        assert stats["success_rate"] == pytest.approx(0.5)
        assert sum(p["successes"] for p in points) == stats["successes"]
        # one outside buyer's pinned tasks weigh 0.5 each in the reputation formula
        expected = reputation.smoothed_success_rate(0.5 * stats["successes"], 0.5 * stats["tasks"])
        assert points[-1]["smoothed_success_rate"] == pytest.approx(expected)

        leaderboard = await client.get("/agents/leaderboard", headers=world.operator)
        row = next(r for r in leaderboard.json() if r["agent_id"] == world.agent_id)
        assert row["successes"] == 2
        # the admins' overview and the success-rate gauge of the alerts count the same way
        system = (await client.get("/admin/metrics", headers=world.admin)).json()
        assert (system["outcomes"], system["success_rate"]) == (4, pytest.approx(0.5))
        exposition = (await client.get("http://test/metrics")).text
        gauge = next(
            sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "dukenet_recent_success_rate"
        )
        assert gauge == pytest.approx(0.5)
