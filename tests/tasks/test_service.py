"""The task service on its own: the order book (claims first-in first-out, per agent), lease
expiry, and result idempotency keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import User, UserRole
from dukenet.agents import service as agents_service
from dukenet.agents.models import Agent
from dukenet.agents.schemas import AgentCreate
from dukenet.errors import Conflict, NotFound
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.ledger import service as ledger_service
from dukenet.tasks import repository as tasks_repository
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task, TaskStatus
from dukenet.tasks.schemas import ResultSubmit, TaskCreate

CHEAP_HASHER = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


async def create_user(session: AsyncSession, *, role: UserRole = UserRole.BUYER) -> User:
    """Register a user (the caller commits)."""
    return await accounts_service.register(
        session,
        CHEAP_HASHER,
        email=f"{role.value}-{uuid.uuid4().hex[:8]}@example.com",
        password="correct horse battery",
        role=role,
    )


async def create_agent(
    session: AsyncSession, state: AppState, *, owner: User, base_price_sat: int = 1_000
) -> Agent:
    """Register an LLM agent of ``owner`` (the caller commits)."""
    data = AgentCreate.model_validate(
        {
            "name": f"agent-{uuid.uuid4().hex[:8]}",
            "kind": "llm",
            "base_price_sat": base_price_sat,
            "llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
        }
    )
    return await agents_service.register(session, settings=state.settings, owner=owner, data=data)


async def create_task(
    session: AsyncSession, state: AppState, *, buyer: User, agent: Agent, key: str | None = None
) -> Task:
    """Create a complexity-1 task pinned to ``agent`` (the caller commits)."""
    data = TaskCreate(
        description="Add two numbers.", complexity=1, agent_id=agent.id, idempotency_key=key
    )
    task, _ = await tasks_service.create(
        session, settings=state.settings, champion=state.champion, buyer=buyer, data=data
    )
    return task


def _result(task: Task, key: str) -> ResultSubmit:
    assert task.lease_token is not None
    return ResultSubmit(lease_token=task.lease_token, idempotency_key=key, text="3", success=True)


class TestOrderBook:
    async def test_claims_take_the_oldest_assigned_task_of_the_given_agents(
        self, state: AppState
    ) -> None:
        async with state.sessionmaker() as session:
            buyer = await create_user(session)
            operator = await create_user(session, role=UserRole.AGENT)
            a = await create_agent(session, state, owner=operator)
            b = await create_agent(session, state, owner=operator)
            await ledger_service.deposit(session, user_id=buyer.id, amount_sat=10_000)
            first_a = await create_task(session, state, buyer=buyer, agent=a)
            only_b = await create_task(session, state, buyer=buyer, agent=b)
            second_a = await create_task(session, state, buyer=buyer, agent=a)
            await session.commit()

            claims = []
            for agent_ids in ([b.id], [a.id, b.id], [a.id, b.id], [a.id, b.id], []):
                claims.append(
                    await tasks_service.claim(session, agent_ids=agent_ids, runner="r1", lease_s=30)
                )
                await session.commit()

        assert [t.id if t else None for t in claims] == [
            only_b.id,
            first_a.id,
            second_a.id,
            None,
            None,
        ]
        for task in claims[:3]:
            assert task is not None
            assert task.status is TaskStatus.EXECUTING
            assert task.attempts == 1
            assert task.lease_owner == "r1"
            assert task.lease_expires_at is not None and task.lease_expires_at > utcnow()

    async def test_only_expired_leases_are_returned_to_the_queue(self, state: AppState) -> None:
        async with state.sessionmaker() as session:
            buyer = await create_user(session)
            operator = await create_user(session, role=UserRole.AGENT)
            agent = await create_agent(session, state, owner=operator)
            await ledger_service.deposit(session, user_id=buyer.id, amount_sat=10_000)
            for _ in range(3):
                await create_task(session, state, buyer=buyer, agent=agent)
            await session.commit()
            claimed = []
            for _ in range(3):
                task = await tasks_service.claim(
                    session, agent_ids=[agent.id], runner="r", lease_s=30
                )
                assert task is not None
                claimed.append(task)
            claimed[0].lease_expires_at = utcnow() - timedelta(seconds=5)
            claimed[1].lease_expires_at = utcnow() - timedelta(milliseconds=1)
            await session.commit()

            assert await tasks_service.expire_leases(session, settings=state.settings) == 2
            await session.commit()
            assert await tasks_service.expire_leases(session, settings=state.settings) == 0

        statuses = []
        async with state.sessionmaker() as session:
            for task in claimed:
                row = await tasks_repository.get(session, task.id)
                assert row is not None
                statuses.append(row.status)
        assert statuses == [TaskStatus.ASSIGNED, TaskStatus.ASSIGNED, TaskStatus.EXECUTING]


class TestResults:
    async def test_an_idempotency_key_belongs_to_one_task(self, state: AppState) -> None:
        async with state.sessionmaker() as session:
            buyer = await create_user(session)
            operator = await create_user(session, role=UserRole.AGENT)
            agent = await create_agent(session, state, owner=operator)
            await ledger_service.deposit(session, user_id=buyer.id, amount_sat=10_000)
            await create_task(session, state, buyer=buyer, agent=agent)
            await create_task(session, state, buyer=buyer, agent=agent)
            await session.commit()
            one = await tasks_service.claim(session, agent_ids=[agent.id], runner="r", lease_s=30)
            two = await tasks_service.claim(session, agent_ids=[agent.id], runner="r", lease_s=30)
            assert one is not None and two is not None
            await session.commit()
            # Plain values: a rollback expires the ORM objects.
            one_id, two_id, agent_id = one.id, two.id, agent.id
            for_one, for_two = _result(one, "k"), _result(two, "k")

            await tasks_service.submit_result(
                session, settings=state.settings, task_id=one_id, data=for_one, agent_ids=[agent_id]
            )
            await session.commit()
            with pytest.raises(Conflict, match="already used for another task"):
                await tasks_service.submit_result(
                    session,
                    settings=state.settings,
                    task_id=two_id,
                    data=for_two,
                    agent_ids=[agent_id],
                )
            await session.rollback()
            # A replayed key reveals neither the result nor the task to others.
            with pytest.raises(NotFound, match=f"task {one_id} not found"):
                await tasks_service.submit_result(
                    session,
                    settings=state.settings,
                    task_id=one_id,
                    data=for_one,
                    agent_ids=[uuid.uuid4()],
                )
            await session.rollback()
            still = await tasks_repository.get(session, two_id)
            assert still is not None and still.status is TaskStatus.EXECUTING
