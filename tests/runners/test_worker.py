"""The runner loop end to end with the ``llm`` executor against a real HTTP server on loopback:
a task created through the API is claimed, executed, settled and recorded; failures are released
and retried until ``max_attempts``, then refunded; a runner killed mid-task loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.ledger.service import agent_name, escrow_name
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks.models import Task, TaskResult
from tests.factories import create_admin, credit, llm_agent, register, replay_agent, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance
from tests.llm_double import DEFAULT_ANSWER, DEFAULT_USAGE, LLMDouble, Reply

DEPOSIT = 10_000
PRICE = 3_600  # 1,000 sat × complexity 3 × 1.2


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The runner process's HTTP client."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@dataclass
class Shop:
    """An operator's LLM agent at the double, a buyer holding ``DEPOSIT`` sat, and a task."""

    admin: dict[str, str]
    buyer: dict[str, str]
    agent_id: str
    task_id: str


@pytest.fixture
async def shop(client: httpx.AsyncClient, state: AppState, double: LLMDouble) -> Shop:
    """One assigned task for an LLM agent served by ``double``."""
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=double.base_url, base_price_sat=1_000)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    task = await submit_task(client, buyer_headers, complexity=3)
    assert task.status_code == 201 and task.json()["price_sat"] == PRICE
    return Shop(admin, buyer_headers, agent["id"], task.json()["id"])


def llm_runner(state: AppState, settings: Settings, http: httpx.AsyncClient) -> Runner:
    """A runner for LLM agents: one retry per attempt, 10 ms backoff."""
    executor = LLMExecutor(http, max_retries=1, backoff_s=0.01)
    return Runner(state.sessionmaker, settings, {AgentKind.LLM: executor})


async def _task(client: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
    response = await client.get(f"/tasks/{shop.task_id}", headers=shop.buyer)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def _outcomes(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Outcome]:
    async with sessionmaker() as session:
        return list((await session.execute(select(Outcome))).scalars())


class TestAnswered:
    async def test_an_answer_after_a_rate_limit_completes_the_task_and_records_usage(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        http: httpx.AsyncClient,
        double: LLMDouble,
        shop: Shop,
    ) -> None:
        double.script(Reply.error(429))  # rate limited once, retried within the attempt
        runner = llm_runner(state, settings, http)
        assert await runner.run_once() is True

        task = await _task(client, shop)
        assert task["status"] == "completed"
        assert task["attempts"] == 1
        assert task["result"]["text"] == DEFAULT_ANSWER
        assert task["result"]["latency_ms"] is not None
        assert len(double.requests) == 2
        for request in double.requests:
            assert request.json()["messages"] == [{"role": "user", "content": task["description"]}]
        async with state.sessionmaker() as session:
            stmt = select(TaskResult).where(TaskResult.task_id == uuid.UUID(shop.task_id))
            result = (await session.execute(stmt)).scalar_one()
        assert result.meta["usage"] == DEFAULT_USAGE
        assert result.meta["finish_reason"] == "stop"

        agent_account = agent_name(uuid.UUID(shop.agent_id))
        assert await account_balance(state.sessionmaker, agent_account) == PRICE
        assert await wallet_balance(client, shop.buyer) == DEPOSIT - PRICE
        [outcome] = await _outcomes(state.sessionmaker)
        assert outcome.success is True and str(outcome.task_id) == shop.task_id
        agent = (await client.get(f"/agents/{shop.agent_id}", headers=shop.buyer)).json()
        assert agent["finished_tasks"] == 1
        assert agent["success_rate"] == pytest.approx(0.6)
        await assert_ledger_balanced(client, shop.admin, state.sessionmaker)


class TestExecutionErrors:
    async def test_a_failing_endpoint_is_retried_then_the_task_fails_with_a_refund(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        http: httpx.AsyncClient,
        double: LLMDouble,
        shop: Shop,
    ) -> None:
        double.script(default=Reply.error(500))
        runner = llm_runner(state, settings, http)

        assert await runner.run_once() is True
        task = await _task(client, shop)
        assert task["status"] == "assigned"
        assert task["attempts"] == 1
        assert "answered 500" in task["error"]
        assert await wallet_balance(client, shop.buyer) == DEPOSIT - PRICE
        escrow = escrow_name(uuid.UUID(shop.task_id))
        assert await account_balance(state.sessionmaker, escrow) == PRICE

        assert await runner.run_once() is True
        task = await _task(client, shop)
        assert task["status"] == "failed"
        assert task["attempts"] == settings.max_attempts == 2
        assert task["error"].endswith("(after 2 attempts)")
        assert task["result"] is None
        assert await wallet_balance(client, shop.buyer) == DEPOSIT
        assert await account_balance(state.sessionmaker, escrow) == 0
        assert len(double.requests) == 4  # two attempts of one call and one retry each
        assert [o.success for o in await _outcomes(state.sessionmaker)] == [False]
        agent = (await client.get(f"/agents/{shop.agent_id}", headers=shop.buyer)).json()
        assert agent["success_rate"] == pytest.approx(0.4)
        assert await runner.run_once() is False
        await assert_ledger_balanced(client, shop.admin, state.sessionmaker)

    async def test_a_malformed_reply_is_released_and_the_retry_pays_once(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        http: httpx.AsyncClient,
        double: LLMDouble,
        shop: Shop,
    ) -> None:
        double.script(Reply.malformed())
        runner = llm_runner(state, settings, http)

        assert await runner.run_once() is True
        task = await _task(client, shop)
        assert task["status"] == "assigned"
        assert task["error"].startswith("malformed chat completion")

        assert await runner.run_once() is True
        task = await _task(client, shop)
        assert task["status"] == "completed"
        assert task["result"]["attempt"] == 2
        agent_account = agent_name(uuid.UUID(shop.agent_id))
        assert await account_balance(state.sessionmaker, agent_account) == PRICE
        await assert_ledger_balanced(client, shop.admin, state.sessionmaker)


class TestKilledRunner:
    async def test_a_runner_killed_mid_call_loses_nothing(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        http: httpx.AsyncClient,
        double: LLMDouble,
        shop: Shop,
    ) -> None:
        double.script(Reply.hanging())
        doomed = asyncio.create_task(llm_runner(state, settings, http).run_once())
        # The runner holds the lease and waits on the agent...
        assert await asyncio.to_thread(double.wait_for_requests, 1, 10.0)
        doomed.cancel()  # the process dies: no result, no release
        with pytest.raises(asyncio.CancelledError):
            await doomed

        task = await _task(client, shop)
        assert task["status"] == "executing" and task["attempts"] == 1
        escrow = escrow_name(uuid.UUID(shop.task_id))
        assert await account_balance(state.sessionmaker, escrow) == PRICE
        async with state.sessionmaker() as session:
            await session.execute(
                update(Task)
                .where(Task.id == uuid.UUID(shop.task_id))
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()

        assert await llm_runner(state, settings, http).run_once() is True
        task = await _task(client, shop)
        assert task["status"] == "completed"
        assert task["attempts"] == 2
        assert task["result"]["text"] == DEFAULT_ANSWER
        agent_account = agent_name(uuid.UUID(shop.agent_id))
        assert await account_balance(state.sessionmaker, agent_account) == PRICE
        assert await wallet_balance(client, shop.buyer) == DEPOSIT - PRICE
        await assert_ledger_balanced(client, shop.admin, state.sessionmaker)


class TestWhatARunnerTakes:
    async def test_a_runner_leaves_work_it_cannot_execute(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        http: httpx.AsyncClient,
        double: LLMDouble,
        shop: Shop,
    ) -> None:
        other = await replay_agent(client, shop.admin, base_price_sat=1_000)
        pinned = await submit_task(client, shop.buyer, agent_id=other["id"])
        await client.post(f"/agents/{shop.agent_id}/disable", headers=shop.admin)

        # Only a replay task and a disabled LLM agent's task: nothing for an LLM runner.
        assert await llm_runner(state, settings, http).run_once() is False
        assert double.requests == []
        listed = (await client.get("/tasks", headers=shop.buyer)).json()
        assert {t["id"]: t["status"] for t in listed["items"]} == {
            shop.task_id: "assigned",
            pinned.json()["id"]: "assigned",
        }
