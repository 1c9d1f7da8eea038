"""Buyers' feedback on results: typed scores stored per result, flowing into the outcome's
quality; only the buyer (or an admin) sees it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from dukenet.agents.models import Agent, AgentKind
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble


async def _finished_task(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> tuple[str, dict[str, str]]:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    await llm_agent(client, operator, base_url=double.base_url)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**6)
    task = (await submit_task(client, headers)).json()
    async with httpx.AsyncClient() as http:
        runner = Runner(state.sessionmaker, state.settings, {AgentKind.LLM: LLMExecutor(http)})
        assert await runner.run_once()
    return task["id"], headers


async def _quality(state: AppState, task_id: str) -> float:
    async with state.sessionmaker() as session:
        outcome = (await session.execute(select(Outcome))).scalars().one()
        assert str(outcome.task_id) == task_id
        return outcome.quality


async def test_a_rating_sets_the_outcome_quality_and_can_be_replaced(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    task_id, buyer = await _finished_task(client, state, double)
    assert await _quality(state, task_id) == 1.0  # the agent reported success
    first = await client.put(
        f"/tasks/{task_id}/feedback",
        headers=buyer,
        json={"rating": 2, "comment": "half right", "correction": "def add(a, b): return a+b"},
    )
    assert first.status_code == 200, first.text
    assert first.json()["outcome_quality"] == 0.25
    assert await _quality(state, task_id) == 0.25
    second = await client.put(
        f"/tasks/{task_id}/feedback", headers=buyer, json={"thumbs_up": False}
    )
    assert second.json()["id"] == first.json()["id"]  # one row per result, updated
    assert second.json()["rating"] is None and await _quality(state, task_id) == 0.0
    shown = (await client.get(f"/tasks/{task_id}/feedback", headers=buyer)).json()
    assert shown["thumbs_up"] is False and shown["outcome_quality"] == 0.0


async def test_a_low_rating_counts_against_the_agents_reputation(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    task_id, buyer = await _finished_task(client, state, double)
    before = await _agent(state)
    assert before.success_rate == pytest.approx(0.6)  # Beta(2, 2) after one success
    low = await client.put(f"/tasks/{task_id}/feedback", headers=buyer, json={"rating": 2})
    assert low.status_code == 200, low.text
    after = await _agent(state)
    # quality 0.25 < success_threshold 0.5: a failure now; still one finished task
    assert after.success_rate == pytest.approx(0.4)
    assert after.finished_tasks == before.finished_tasks == 1
    await client.put(f"/tasks/{task_id}/feedback", headers=buyer, json={"rating": 5})
    assert (await _agent(state)).success_rate == pytest.approx(0.6)


async def _agent(state: AppState) -> Agent:
    async with state.sessionmaker() as session:
        return (await session.execute(select(Agent))).scalars().one()


async def test_bad_feedback_is_refused(
    client: httpx.AsyncClient, state: AppState, double: LLMDouble
) -> None:
    task_id, buyer = await _finished_task(client, state, double)
    url = f"/tasks/{task_id}/feedback"
    assert (await client.put(url, headers=buyer, json={})).status_code == 422
    assert (await client.put(url, headers=buyer, json={"rating": 6})).status_code == 422
    assert (await client.put(url, json={"rating": 3})).status_code == 401
    _, stranger = await register(client)
    assert (await client.put(url, headers=stranger, json={"rating": 3})).status_code == 404
    assert (await client.get(url, headers=buyer)).status_code == 404  # none given yet


async def test_no_feedback_before_a_result(client: httpx.AsyncClient, state: AppState) -> None:
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    await llm_agent(client, operator, base_url="http://127.0.0.1:9/v1")
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**6)
    task = (await submit_task(client, headers)).json()
    response = await client.put(
        f"/tasks/{task['id']}/feedback", headers=headers, json={"thumbs_up": True}
    )
    assert response.status_code == 409
