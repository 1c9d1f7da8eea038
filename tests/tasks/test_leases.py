"""Leases: an expired or released lease puts the task back in the queue with its escrow intact,
``max_attempts`` ends it as failed with a full refund, and a stale lease token is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.ledger.service import agent_name, escrow_name
from dukenet.runners.worker import Runner
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
DEPOSIT = 10_000
PRICE = 3_600  # 1,000 sat × complexity 3 × 1.2


@dataclass
class Queued:
    """An assigned task of a buyer holding ``DEPOSIT`` sat, for an operator's LLM agent."""

    admin: dict[str, str]
    buyer: dict[str, str]
    operator: dict[str, str]
    agent_id: str
    task_id: str


@pytest.fixture
async def queued(client: httpx.AsyncClient, state: AppState) -> Queued:
    """One task waiting in the queue for its agent's runner."""
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    task = await submit_task(client, buyer_headers, complexity=3)
    assert task.status_code == 201 and task.json()["price_sat"] == PRICE
    return Queued(admin, buyer_headers, operator, agent["id"], task.json()["id"])


async def _claim(client: httpx.AsyncClient, queued: Queued) -> dict[str, Any]:
    response = await client.post("/runner/claim", headers=queued.operator, json={"runner": "r"})
    assert response.status_code == 200, response.text
    claim: dict[str, Any] = response.json()
    assert claim is not None and claim["task_id"] == queued.task_id
    return claim


async def _lease_expires_at(
    sessionmaker: async_sessionmaker[AsyncSession], task_id: str
) -> datetime | None:
    async with sessionmaker() as session:
        stmt = select(Task.lease_expires_at).where(Task.id == uuid.UUID(task_id))
        return (await session.execute(stmt)).scalar_one()


async def _let_lease_lapse(sessionmaker: async_sessionmaker[AsyncSession], task_id: str) -> None:
    """Move the task's lease expiry into the past, as if its runner had gone silent."""
    async with sessionmaker() as session:
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


async def _expire(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    async with sessionmaker() as session:
        expired = await tasks_service.expire_leases(session, settings=settings)
        await session.commit()
    return expired


async def _task(client: httpx.AsyncClient, queued: Queued) -> dict[str, Any]:
    response = await client.get(f"/tasks/{queued.task_id}", headers=queued.buyer)
    assert response.status_code == 200
    task: dict[str, Any] = response.json()
    return task


class TestLeaseExpiry:
    async def test_a_live_lease_is_kept_and_an_expired_one_returns_the_task_with_its_escrow(
        self,
        client: httpx.AsyncClient,
        queued: Queued,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        claim = await _claim(client, queued)
        first = await _lease_expires_at(sessionmaker, queued.task_id)
        assert first is not None and first > utcnow()
        assert await _expire(sessionmaker, settings) == 0  # a live lease is kept
        assert (await _task(client, queued))["status"] == "executing"
        beat = await client.post(
            f"/runner/tasks/{queued.task_id}/heartbeat",
            headers=queued.operator,
            params={"lease_token": claim["lease_token"]},
        )
        assert beat.status_code == 200
        extended = await _lease_expires_at(sessionmaker, queued.task_id)
        assert extended is not None and extended > first

        await _let_lease_lapse(sessionmaker, queued.task_id)
        assert await _expire(sessionmaker, settings) == 1

        task = await _task(client, queued)
        assert task["status"] == "assigned"
        assert task["attempts"] == 1
        assert task["error"] == "lease expired"
        assert [t["kind"] for t in task["transactions"]] == ["escrow_hold"]
        assert await wallet_balance(client, queued.buyer) == DEPOSIT - PRICE
        escrow = escrow_name(uuid.UUID(queued.task_id))
        assert await account_balance(sessionmaker, escrow) == PRICE
        assert await _lease_expires_at(sessionmaker, queued.task_id) is None
        await assert_ledger_balanced(client, queued.admin, sessionmaker)

    async def test_after_max_attempts_the_task_fails_with_a_full_refund(
        self,
        client: httpx.AsyncClient,
        queued: Queued,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        assert settings.max_attempts == 2
        for attempt in (1, 2):
            claim = await _claim(client, queued)
            assert claim["attempt"] == attempt
            await _let_lease_lapse(sessionmaker, queued.task_id)
            assert await _expire(sessionmaker, settings) == 1

        task = await _task(client, queued)
        assert task["status"] == "failed"
        assert task["attempts"] == 2
        assert task["error"] == "lease expired (after 2 attempts)"
        assert task["finished_at"] is not None
        assert [t["kind"] for t in task["transactions"]] == ["escrow_hold", "escrow_refund"]
        assert await wallet_balance(client, queued.buyer) == DEPOSIT
        assert await account_balance(sessionmaker, escrow_name(uuid.UUID(queued.task_id))) == 0
        assert await account_balance(sessionmaker, agent_name(uuid.UUID(queued.agent_id))) == 0
        nothing = await client.post("/runner/claim", headers=queued.operator, json={})
        assert nothing.json() is None

        async with sessionmaker() as session:
            outcomes = (await session.execute(select(Outcome))).scalars().all()
        assert [(str(o.task_id), o.success) for o in outcomes] == [(queued.task_id, False)]
        agent = (await client.get(f"/agents/{queued.agent_id}", headers=queued.buyer)).json()
        assert agent["finished_tasks"] == 1
        assert agent["success_rate"] == pytest.approx(0.4)  # Beta(2, 2) after one failure
        await assert_ledger_balanced(client, queued.admin, sessionmaker)


class TestKilledRunner:
    async def test_a_killed_runner_loses_nothing_and_its_stale_lease_is_refused(
        self,
        client: httpx.AsyncClient,
        queued: Queued,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        # A runner claims the task, then dies without submitting or heartbeating.
        dead = await _claim(client, queued)
        await _let_lease_lapse(sessionmaker, queued.task_id)
        # Any runner's loop reaps expired leases first (this one executes no agent kind).
        assert await Runner(sessionmaker, settings, {}).run_once() is False
        assert (await _task(client, queued))["status"] == "assigned"
        assert await account_balance(sessionmaker, escrow_name(uuid.UUID(queued.task_id))) == PRICE

        fresh = await _claim(client, queued)
        assert fresh["attempt"] == 2
        assert fresh["lease_token"] != dead["lease_token"]
        url = f"/runner/tasks/{queued.task_id}"
        stale = {
            "lease_token": dead["lease_token"],
            "idempotency_key": "dead-runner",
            "text": "late answer",
            "success": True,
        }
        refused = await client.post(f"{url}/result", headers=queued.operator, json=stale)
        assert refused.status_code == 409
        assert "is not leased to you" in refused.json()["detail"]
        old_beat = await client.post(
            f"{url}/heartbeat", headers=queued.operator, params={"lease_token": dead["lease_token"]}
        )
        assert old_beat.status_code == 409

        result = {**stale, "lease_token": fresh["lease_token"], "idempotency_key": "live-runner"}
        accepted = await client.post(f"{url}/result", headers=queued.operator, json=result)
        assert accepted.status_code == 201
        assert accepted.json()["attempt"] == 2
        task = await _task(client, queued)
        assert task["status"] == "completed"
        assert [t["kind"] for t in task["transactions"]] == ["escrow_hold", "escrow_release"]
        assert await account_balance(sessionmaker, agent_name(uuid.UUID(queued.agent_id))) == PRICE
        assert await wallet_balance(client, queued.buyer) == DEPOSIT - PRICE
        await assert_ledger_balanced(client, queued.admin, sessionmaker)


class TestRelease:
    async def test_a_released_task_is_retried_then_fails_with_a_refund(
        self,
        client: httpx.AsyncClient,
        queued: Queued,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        url = f"/runner/tasks/{queued.task_id}/release"
        first = await _claim(client, queued)
        released = await client.post(
            url,
            headers=queued.operator,
            params={"lease_token": first["lease_token"], "error": "upstream 503"},
        )
        assert released.status_code == 200
        assert released.json()["status"] == "assigned"
        assert released.json()["error"] == "upstream 503"
        again = await client.post(
            url, headers=queued.operator, params={"lease_token": first["lease_token"]}
        )
        assert again.status_code == 409  # the lease went with the release
        assert await wallet_balance(client, queued.buyer) == DEPOSIT - PRICE

        second = await _claim(client, queued)
        final = await client.post(
            url, headers=queued.operator, params={"lease_token": second["lease_token"]}
        )
        assert final.status_code == 200
        assert final.json()["status"] == "failed"
        assert final.json()["error"] == "released by runner (after 2 attempts)"
        assert await wallet_balance(client, queued.buyer) == DEPOSIT
        await assert_ledger_balanced(client, queued.admin, sessionmaker)
