"""Escrow settled by the buyer: a delivered result waits for acceptance, a rejection refunds and
turns the outcome into a failure, the dispute window's end pays the agent; failover to another
agent within the buyer's budget; human agents working from their inbox."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
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
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task
from dukenet.tasks.sweeper import Sweeper
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
DEPOSIT = 100_000
WINDOW_S = 3_600.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default test settings with a one-hour dispute window."""
    return settings.model_copy(update={"dispute_window_s": WINDOW_S})


@dataclass
class Market:
    """An admin, a credited buyer, another buyer, and an operator with one LLM agent."""

    admin: dict[str, str]
    buyer: dict[str, str]
    other_buyer: dict[str, str]
    operator: dict[str, str]
    agent: dict[str, Any]


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState) -> Market:
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    _, other = await register(client)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    return Market(admin, buyer_headers, other, operator, agent)


async def _claim(client: httpx.AsyncClient, operator: dict[str, str], **body: Any) -> Any:
    response = await client.post("/runner/claim", headers=operator, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def _set_columns(state: AppState, *tasks: dict[str, Any], **values: Any) -> None:
    """Write ``values`` into the rows of ``tasks`` directly (to move their clocks), committed."""
    async with state.sessionmaker() as session:
        await session.execute(
            update(Task).where(Task.id.in_([uuid.UUID(t["id"]) for t in tasks])).values(**values)
        )
        await session.commit()


async def _submit(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    claim: dict[str, Any],
    *,
    success: bool = True,
    text: str = "42",
) -> None:
    """Submit the result of the task ``claim`` leased (one idempotency key per task)."""
    submitted = await client.post(
        f"/runner/tasks/{claim['task_id']}/result",
        headers=operator,
        json={
            "lease_token": claim["lease_token"],
            "idempotency_key": f"result-{claim['task_id']}",
            "text": text,
            "success": success,
        },
    )
    assert submitted.status_code == 201, submitted.text


async def _deliver(
    client: httpx.AsyncClient, market: Market, *, success: bool = True
) -> dict[str, Any]:
    """Create a task, claim it as the operator and submit a result; return the task."""
    task = (await submit_task(client, market.buyer)).json()
    claim = await _claim(client, market.operator, task_id=task["id"])
    assert claim["task_id"] == task["id"]
    await _submit(client, market.operator, claim, success=success)
    result: dict[str, Any] = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
    return result


async def _outcome(sessionmaker: async_sessionmaker[AsyncSession], task_id: str) -> Outcome:
    async with sessionmaker() as session:
        outcome = (
            await session.execute(select(Outcome).where(Outcome.task_id == uuid.UUID(task_id)))
        ).scalar_one()
    return outcome


class TestAcceptance:
    async def test_a_success_waits_in_escrow_until_the_buyer_accepts_and_pays_once(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task = await _deliver(client, market)
        assert task["status"] == "delivered"
        assert task["accept_by"] is not None and task["finished_at"] is None
        escrow = escrow_name(uuid.UUID(task["id"]))
        agent_account = agent_name(uuid.UUID(market.agent["id"]))
        assert await account_balance(state.sessionmaker, escrow) == task["price_sat"]
        assert await account_balance(state.sessionmaker, agent_account) == 0
        # The outcome is known at delivery: the router learns without waiting for the buyer.
        assert (await _outcome(state.sessionmaker, task["id"])).success is True

        accepted = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "completed"
        again = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
        assert again.status_code == 200 and again.json()["status"] == "completed"
        assert await account_balance(state.sessionmaker, escrow) == 0
        assert await account_balance(state.sessionmaker, agent_account) == task["price_sat"]
        assert await wallet_balance(client, market.buyer) == DEPOSIT - task["price_sat"]

        late = await client.post(
            f"/tasks/{task['id']}/reject", headers=market.buyer, json={"reason": "changed mind"}
        )
        assert late.status_code == 409
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_rejection_refunds_the_buyer_and_counts_as_the_agents_failure(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task = await _deliver(client, market)
        before = (await client.get(f"/agents/{market.agent['id']}", headers=market.buyer)).json()

        rejected = await client.post(
            f"/tasks/{task['id']}/reject", headers=market.buyer, json={"reason": "wrong answer"}
        )
        assert rejected.status_code == 200, rejected.text
        body = rejected.json()
        assert body["status"] == "rejected" and body["rejection_reason"] == "wrong answer"
        twice = await client.post(
            f"/tasks/{task['id']}/reject", headers=market.buyer, json={"reason": "again"}
        )
        assert twice.status_code == 200 and twice.json()["rejection_reason"] == "wrong answer"
        assert await wallet_balance(client, market.buyer) == DEPOSIT
        agent_account = agent_name(uuid.UUID(market.agent["id"]))
        assert await account_balance(state.sessionmaker, agent_account) == 0

        outcome = await _outcome(state.sessionmaker, task["id"])
        assert outcome.success is False and outcome.quality == 0.0
        after = (await client.get(f"/agents/{market.agent['id']}", headers=market.buyer)).json()
        assert after["success_rate"] < before["success_rate"]
        assert after["finished_tasks"] == before["finished_tasks"]  # the same task, relabelled

        accept = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
        assert accept.status_code == 409
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_only_the_buyer_or_an_admin_settles_and_only_a_delivered_task(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        queued = (await submit_task(client, market.buyer)).json()
        early = await client.post(f"/tasks/{queued['id']}/accept", headers=market.buyer)
        assert early.status_code == 409 and "assigned" in early.json()["detail"]

        task = await _deliver(client, market)
        for headers in (market.other_buyer, market.operator):
            stranger = await client.post(f"/tasks/{task['id']}/accept", headers=headers)
            assert stranger.status_code == 404
            refused = await client.post(
                f"/tasks/{task['id']}/reject", headers=headers, json={"reason": "x"}
            )
            assert refused.status_code == 404
        blank = await client.post(
            f"/tasks/{task['id']}/reject", headers=market.buyer, json={"reason": ""}
        )
        assert blank.status_code == 422
        by_admin = await client.post(f"/tasks/{task['id']}/accept", headers=market.admin)
        assert by_admin.status_code == 200 and by_admin.json()["status"] == "completed"

    async def test_a_failure_refunds_at_once(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task = await _deliver(client, market, success=False)
        assert task["status"] == "failed" and task["accept_by"] is None
        assert await wallet_balance(client, market.buyer) == DEPOSIT

    async def test_the_end_of_the_dispute_window_pays_the_agent(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        due = await _deliver(client, market)
        not_due = await _deliver(client, market)
        await _set_columns(state, due, accept_by=utcnow() - timedelta(seconds=1))
        late = await client.post(
            f"/tasks/{due['id']}/reject", headers=market.buyer, json={"reason": "too late"}
        )
        assert late.status_code == 409 and "dispute window" in late.json()["detail"]

        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 1, 0, 0)
        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 0, 0, 0)
        settled = (await client.get(f"/tasks/{due['id']}", headers=market.buyer)).json()
        waiting = (await client.get(f"/tasks/{not_due['id']}", headers=market.buyer)).json()
        assert settled["status"] == "completed" and waiting["status"] == "delivered"
        agent_account = agent_name(uuid.UUID(market.agent["id"]))
        assert await account_balance(state.sessionmaker, agent_account) == due["price_sat"]
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)


class TestFailover:
    async def _two_agents(
        self, client: httpx.AsyncClient, market: Market, *, second_price: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (a task assigned to the market's agent, a second agent enabled after it)."""
        second = await llm_agent(
            client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=second_price
        )
        await client.post(f"/agents/{second['id']}/disable", headers=market.operator)
        task = (await submit_task(client, market.buyer)).json()
        assert task["agent_id"] == market.agent["id"]
        await client.post(f"/agents/{second['id']}/enable", headers=market.operator)
        return task, second

    async def _release(self, client: httpx.AsyncClient, market: Market, task_id: str) -> Any:
        claim = await _claim(client, market.operator, task_id=task_id)
        released = await client.post(
            f"/runner/tasks/{task_id}/release",
            headers=market.operator,
            params={"lease_token": claim["lease_token"], "error": "endpoint down"},
        )
        assert released.status_code == 200, released.text
        return released.json()

    async def test_a_retry_goes_to_a_cheaper_agent_and_the_difference_is_refunded(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task, second = await self._two_agents(client, market, second_price=500)
        released = await self._release(client, market, task["id"])
        assert released["status"] == "assigned" and released["agent_id"] == second["id"]
        assert released["price_sat"] == task["price_sat"] // 2
        assert released["escrow_sat"] == task["price_sat"]
        detail = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert detail["routing"]["failovers"][0]["to_agent_id"] == second["id"]

        claim = await _claim(client, market.operator, agent_id=second["id"])
        assert claim["task_id"] == task["id"] and claim["attempt"] == 2
        await _submit(client, market.operator, claim)
        accepted = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
        assert accepted.status_code == 200, accepted.text
        paid = released["price_sat"]
        assert await account_balance(state.sessionmaker, agent_name(uuid.UUID(second["id"]))) == (
            paid
        )
        assert await wallet_balance(client, market.buyer) == DEPOSIT - paid
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_retry_never_goes_to_an_agent_above_the_escrowed_budget(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task, _ = await self._two_agents(client, market, second_price=2_000)
        released = await self._release(client, market, task["id"])
        assert released["agent_id"] == market.agent["id"]
        assert released["price_sat"] == task["price_sat"]

    async def test_a_pinned_task_stays_with_its_agent(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        await llm_agent(client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=500)
        task = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        released = await self._release(client, market, task["id"])
        assert released["agent_id"] == market.agent["id"]

    async def test_an_excluded_agent_is_never_a_failover(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        second = await llm_agent(
            client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=500
        )
        task = (await submit_task(client, market.buyer, exclude_agent_ids=[second["id"]])).json()
        released = await self._release(client, market, task["id"])
        assert released["agent_id"] == market.agent["id"]


class TestAgentLeavesTheMarket:
    async def test_its_queued_tasks_move_or_are_refunded_and_running_ones_finish(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        queued = (await submit_task(client, market.buyer)).json()
        pinned = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        running = (await submit_task(client, market.buyer)).json()
        lease = await _claim(client, market.operator, task_id=running["id"])
        other = await llm_agent(
            client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=900
        )

        off = await client.post(f"/agents/{market.agent['id']}/disable", headers=market.operator)
        assert off.status_code == 200, off.text

        def shown(task: dict[str, Any]) -> Any:
            return client.get(f"/tasks/{task['id']}", headers=market.buyer)

        moved = (await shown(queued)).json()
        assert moved["status"] == "assigned" and moved["agent_id"] == other["id"]
        assert moved["routing"]["failovers"][0]["reason"] == "agent disabled"
        refunded = (await shown(pinned)).json()
        assert refunded["status"] == "failed" and "taken off the market" in refunded["error"]
        assert (await shown(running)).json()["status"] == "executing"
        assert await wallet_balance(client, market.buyer) == (
            DEPOSIT - queued["escrow_sat"] - running["escrow_sat"]
        )
        async with state.sessionmaker() as session:
            outcomes = (await session.execute(select(Outcome))).scalars().all()
        assert outcomes == []  # leaving the market is not a failure of the agent's
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

        # The disabled agent's runner still heartbeats and delivers the task it holds.
        beat = await client.post(
            f"/runner/tasks/{running['id']}/heartbeat",
            headers=market.operator,
            params={"lease_token": lease["lease_token"]},
        )
        assert beat.status_code == 200, beat.text
        await _submit(client, market.operator, lease)
        assert (await shown(running)).json()["status"] in ("delivered", "completed")


class TestClaimTimeout:
    async def test_a_task_nobody_claims_is_offered_to_another_agent(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        state.settings = state.settings.model_copy(update={"claim_timeout_s": 600.0})
        stale = (await submit_task(client, market.buyer)).json()
        pinned = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        fresh = (await submit_task(client, market.buyer)).json()
        other = await llm_agent(
            client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=900
        )
        await _set_columns(state, stale, pinned, assigned_at=utcnow() - timedelta(seconds=601))

        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 0, 1, 0)

        def shown(task: dict[str, Any]) -> Any:
            return client.get(f"/tasks/{task['id']}", headers=market.buyer)

        moved = (await shown(stale)).json()
        assert moved["agent_id"] == other["id"] and moved["attempts"] == 0
        assert moved["routing"]["failovers"][0]["reason"] == "not claimed in time"
        assert (await shown(pinned)).json()["agent_id"] == market.agent["id"]  # keeps waiting
        assert (await shown(fresh)).json()["agent_id"] == market.agent["id"]
        # The pinned task's clock restarted: the next sweep leaves it alone.
        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 0, 0, 0)

    async def test_a_task_is_never_offered_back_to_an_agent_that_let_it_wait(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        state.settings = state.settings.model_copy(update={"claim_timeout_s": 600.0})
        task = (await submit_task(client, market.buyer)).json()
        other = await llm_agent(
            client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=900
        )

        async def time_out() -> tuple[int, ...]:
            await _set_columns(state, task, assigned_at=utcnow() - timedelta(seconds=601))
            return tuple(await Sweeper(state.sessionmaker, state.settings).sweep())

        assert await time_out() == (0, 0, 1, 0)  # to the other agent
        assert await time_out() == (0, 0, 0, 0)  # not back to the first: it waits where it is
        shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert shown["agent_id"] == other["id"]
        assert [f["to_agent_id"] for f in shown["routing"]["failovers"]] == [other["id"]]


DEADLINE_S = 600.0


async def _backdate(state: AppState, task: dict[str, Any], *, seconds: float, **more: Any) -> None:
    """Make a task look created (and assigned) ``seconds`` ago; ``more`` sets other columns."""
    then = utcnow() - timedelta(seconds=seconds)
    await _set_columns(state, task, created_at=then, assigned_at=then, **more)


async def _sweep(state: AppState) -> int:
    """Sweep once; return how many unclaimed tasks it refunded at their claim deadline."""
    return (await Sweeper(state.sessionmaker, state.settings).sweep()).refunded_unclaimed


class TestClaimDeadline:
    @pytest.fixture(autouse=True)
    def _deadline(self, state: AppState) -> None:
        state.settings = state.settings.model_copy(update={"claim_deadline_s": DEADLINE_S})

    async def test_a_pinned_task_past_the_deadline_fails_with_one_full_refund_and_no_outcome(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        agent_before = (
            await client.get(f"/agents/{market.agent['id']}", headers=market.buyer)
        ).json()
        late = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        early = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        await _backdate(state, late, seconds=DEADLINE_S + 1)
        await _backdate(state, early, seconds=DEADLINE_S / 2)

        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 0, 0, 1)
        assert await _sweep(state) == 0

        failed = (await client.get(f"/tasks/{late['id']}", headers=market.buyer)).json()
        assert failed["status"] == "failed" and failed["finished_at"] is not None
        assert failed["error"] == "not claimed within the claim deadline (600 s); refunded"
        assert failed["attempts"] == 0
        assert [t["kind"] for t in failed["transactions"]] == ["escrow_hold", "escrow_refund"]
        waiting = (await client.get(f"/tasks/{early['id']}", headers=market.buyer)).json()
        assert waiting["status"] == "assigned" and waiting["error"] is None
        assert await wallet_balance(client, market.buyer) == DEPOSIT - early["escrow_sat"]
        assert await account_balance(state.sessionmaker, escrow_name(uuid.UUID(late["id"]))) == 0
        async with state.sessionmaker() as session:
            assert (await session.execute(select(Outcome))).scalars().all() == []
        agent_after = (
            await client.get(f"/agents/{market.agent['id']}", headers=market.buyer)
        ).json()
        assert agent_after["finished_tasks"] == agent_before["finished_tasks"]
        assert agent_after["success_rate"] == agent_before["success_rate"]
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_claimed_task_is_never_expired(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        executing = (await submit_task(client, market.buyer)).json()
        await _claim(client, market.operator, task_id=executing["id"])
        delivered = await _deliver(client, market)
        for task in (executing, delivered):
            await _backdate(state, task, seconds=10 * DEADLINE_S)

        assert await _sweep(state) == 0
        for task, status in ((executing, "executing"), (delivered, "delivered")):
            shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
            assert shown["status"] == status

    async def test_a_retried_task_counts_from_the_end_of_its_last_attempt(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        claim = await _claim(client, market.operator, task_id=task["id"])
        released = await client.post(
            f"/runner/tasks/{task['id']}/release",
            headers=market.operator,
            params={"lease_token": claim["lease_token"], "error": "endpoint down"},
        )
        assert released.json()["status"] == "assigned"
        await _backdate(state, task, seconds=10 * DEADLINE_S)
        assert await _sweep(state) == 0  # back in the queue just now

        await _backdate(
            state,
            task,
            seconds=DEADLINE_S + 1,
            available_at=utcnow() - timedelta(seconds=DEADLINE_S + 1),
        )
        assert await _sweep(state) == 1
        assert await wallet_balance(client, market.buyer) == DEPOSIT
        async with state.sessionmaker() as session:
            assert (await session.execute(select(Outcome))).scalars().all() == []
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_task_another_agent_could_take_is_refunded_not_offered_again(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task = (await submit_task(client, market.buyer)).json()
        await llm_agent(client, market.operator, base_url=UNUSED_ENDPOINT, base_price_sat=900)
        await _backdate(state, task, seconds=DEADLINE_S + 1)

        assert await Sweeper(state.sessionmaker, state.settings).sweep() == (0, 0, 0, 1)
        shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert shown["status"] == "failed" and shown["agent_id"] == market.agent["id"]
        assert await wallet_balance(client, market.buyer) == DEPOSIT

    async def test_racing_sweepers_refund_once(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        tasks = [(await submit_task(client, market.buyer)).json() for _ in range(3)]
        for task in tasks:
            await _backdate(state, task, seconds=DEADLINE_S + 1)

        counts = await asyncio.gather(*(_sweep(state) for _ in range(4)))
        assert sum(counts) == len(tasks)
        assert await _sweep(state) == 0
        for task in tasks:
            shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
            assert [t["kind"] for t in shown["transactions"]] == ["escrow_hold", "escrow_refund"]
        assert await wallet_balance(client, market.buyer) == DEPOSIT
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_deadline_of_zero_waits_forever(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        state.settings = state.settings.model_copy(update={"claim_deadline_s": 0.0})
        task = (await submit_task(client, market.buyer, agent_id=market.agent["id"])).json()
        await _backdate(state, task, seconds=365 * 86_400)

        assert await _sweep(state) == 0
        shown = (await client.get(f"/tasks/{task['id']}", headers=market.buyer)).json()
        assert shown["status"] == "assigned"


class TestRetryBackoff:
    def test_the_backoff_doubles_per_attempt_up_to_its_cap(self, settings: Settings) -> None:
        config = settings.model_copy(update={"retry_backoff_s": 2.0, "retry_backoff_max_s": 5.0})
        delays = [tasks_service.retry_backoff_s(config, n) for n in range(4)]
        assert delays == [0.0, 2.0, 4.0, 5.0]

    async def test_a_released_task_is_not_claimed_before_its_backoff_ends(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        state.settings = state.settings.model_copy(update={"retry_backoff_s": 600.0})
        task = (await submit_task(client, market.buyer)).json()
        claim = await _claim(client, market.operator, task_id=task["id"])
        await client.post(
            f"/runner/tasks/{task['id']}/release",
            headers=market.operator,
            params={"lease_token": claim["lease_token"]},
        )
        assert await _claim(client, market.operator) is None
        assert await _claim(client, market.operator, task_id=task["id"]) is None
        await _set_columns(state, task, available_at=utcnow())
        retry = await _claim(client, market.operator)
        assert retry["task_id"] == task["id"] and retry["attempt"] == 2


class TestHumanAgents:
    async def test_an_operator_answers_from_the_inbox_and_the_buyer_accepts(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        created = await client.post(
            "/agents",
            headers=market.operator,
            json={"name": f"human-{uuid.uuid4().hex[:6]}", "kind": "human", "base_price_sat": 800},
        )
        assert created.status_code == 201, created.text
        human = created.json()
        assert human["kind"] == "human"
        task = (await submit_task(client, market.buyer, agent_id=human["id"])).json()
        _, stranger = await register(client, role="agent")

        inbox = await client.get(
            "/runner/inbox", headers=market.operator, params={"agent_id": human["id"]}
        )
        assert inbox.status_code == 200, inbox.text
        assert [t["id"] for t in inbox.json()["items"]] == [task["id"]]
        assert inbox.json()["items"][0]["status"] == "assigned"
        empty = await client.get("/runner/inbox", headers=stranger)
        assert empty.status_code == 200 and empty.json()["total"] == 0
        assert await _claim(client, stranger, task_id=task["id"]) is None
        buyer_inbox = await client.get("/runner/inbox", headers=market.buyer)
        assert buyer_inbox.status_code == 403

        claim = await _claim(client, market.operator, task_id=task["id"], runner="alice")
        assert claim["task_id"] == task["id"]
        held = await client.get(
            "/runner/inbox", headers=market.operator, params={"status": "executing"}
        )
        assert [t["id"] for t in held.json()["items"]] == [task["id"]]
        await _submit(client, market.operator, claim, text="Here is my answer.")
        accepted = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
        assert accepted.json()["status"] == "completed"
        earned = await account_balance(state.sessionmaker, agent_name(uuid.UUID(human["id"])))
        assert earned == task["price_sat"] > 0
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)
