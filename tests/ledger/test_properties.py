"""Property-based tests of the money: random sequences of create / claim / succeed / fail /
release / expire / accept / reject / cancel / settle-due (with double submits and double
accepts) keep every account equal to the sum of its entries, money constant, and each account
at exactly the balance the tasks' final states imply."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import User, UserRole
from dukenet.agents import service as agents_service
from dukenet.agents.schemas import AgentCreate
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.errors import DukenetError
from dukenet.kit.orm import utcnow
from dukenet.learning.serving import ChampionCache
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerTransaction, LedgerTransactionKind
from dukenet.market import pricing
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task, TaskStatus
from dukenet.tasks.schemas import ResultSubmit, TaskCreate
from dukenet.tasks.sweeper import Sweeper

DEPOSIT = 10_000_000
FEE_BPS = 250
N_TASKS = 4

OPS = st.sampled_from(
    [
        "claim",
        "succeed",
        "succeed_twice",
        "fail",
        "release",
        "expire",
        "accept",
        "accept_twice",
        "reject",
        "cancel",
        "settle_due",
    ]
)
STEP = st.tuples(OPS, st.integers(0, N_TASKS - 1))


@dataclass
class World:
    """One buyer, three human agents of one operator, and the tasks created so far."""

    buyer: User
    agents: list[uuid.UUID]
    tasks: list[uuid.UUID] = field(default_factory=list)
    leases: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)


async def _world(
    sessionmaker: async_sessionmaker[AsyncSession], config: Settings, prices: list[int]
) -> World:
    hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
    async with sessionmaker() as session:
        await ledger_service.ensure_system_accounts(session)
        tag = uuid.uuid4().hex[:10]
        buyer = await accounts_service.register(
            session, hasher, email=f"b-{tag}@example.com", password="x" * 12, role=UserRole.BUYER
        )
        operator = await accounts_service.register(
            session, hasher, email=f"o-{tag}@example.com", password="x" * 12, role=UserRole.AGENT
        )
        agents = [
            await agents_service.register(
                session,
                settings=config,
                owner=operator,
                data=AgentCreate(name=f"h{i}-{tag}", kind="human", base_price_sat=price),
            )
            for i, price in enumerate(prices)
        ]
        await ledger_service.deposit(session, user_id=buyer.id, amount_sat=DEPOSIT)
        await session.commit()
        return World(buyer, [a.id for a in agents])


async def _step(
    session: AsyncSession, config: Settings, world: World, op: str, task_id: uuid.UUID
) -> None:
    agents = world.agents
    if op == "claim":
        task = await tasks_service.claim(
            session, agent_ids=agents, runner="prop", lease_s=60, task_id=task_id
        )
        if task is not None:
            assert task.lease_token is not None
            world.leases[task_id] = task.lease_token
    elif op in ("succeed", "succeed_twice", "fail"):
        token = world.leases.get(task_id, uuid.uuid4())
        data = ResultSubmit(
            lease_token=token,
            idempotency_key=f"{task_id}:{token}",
            text="answer",
            success=op != "fail",
        )
        for _ in range(2 if op == "succeed_twice" else 1):
            await tasks_service.submit_result(
                session, settings=config, task_id=task_id, data=data, agent_ids=agents
            )
    elif op == "release":
        await tasks_service.release(
            session,
            settings=config,
            task_id=task_id,
            lease_token=world.leases.get(task_id, uuid.uuid4()),
            agent_ids=agents,
            error="boom",
        )
    elif op == "expire":
        await session.execute(
            update(Task)
            .where(Task.id == task_id, Task.status == TaskStatus.EXECUTING)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await tasks_service.expire_leases(session, settings=config)
    elif op in ("accept", "accept_twice"):
        for _ in range(2 if op == "accept_twice" else 1):
            await tasks_service.accept(session, settings=config, user=world.buyer, task_id=task_id)
    elif op == "reject":
        await tasks_service.reject(
            session, settings=config, user=world.buyer, task_id=task_id, reason="no"
        )
    elif op == "cancel":
        await tasks_service.cancel(session, user=world.buyer, task_id=task_id)
    elif op == "settle_due":
        await session.execute(
            update(Task)
            .where(Task.status == TaskStatus.DELIVERED)
            .values(accept_by=utcnow() - timedelta(seconds=1))
        )
        await tasks_service.settle_due(session, settings=config)


async def _scenario(
    url: str,
    config: Settings,
    prices: list[int],
    complexities: list[int],
    steps: list[tuple[str, int]],
) -> None:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        world = await _world(sessionmaker, config, prices)
        async with sessionmaker() as session:
            for complexity in complexities:
                task, _ = await tasks_service.create(
                    session,
                    settings=config,
                    champion=ChampionCache(),
                    buyer=world.buyer,
                    data=TaskCreate(description="add two numbers", complexity=complexity),
                )
                world.tasks.append(task.id)
            await session.commit()
        for op, index in steps:
            async with sessionmaker() as session:
                try:
                    await _step(session, config, world, op, world.tasks[index])
                    await session.commit()
                except DukenetError:
                    await session.rollback()  # a refused action must change nothing
        await Sweeper(sessionmaker, config).sweep()
        async with sessionmaker() as session:
            await _assert_money(session, world)
    finally:
        await engine.dispose()


async def _assert_money(session: AsyncSession, world: World) -> None:
    report = await ledger_service.check(session)
    assert report.ok and report.total_sat == 0, report
    wallet, earned, revenue = await task_money(session, world)
    assert await ledger_service.balance(session, ledger_service.wallet_name(world.buyer.id)) == (
        wallet
    )
    for agent_id, amount in earned.items():
        assert await ledger_service.balance(session, ledger_service.agent_name(agent_id)) == amount
    assert revenue <= await ledger_service.balance(session, ledger_service.PLATFORM_REVENUE)


async def task_money(session: AsyncSession, world: World) -> tuple[int, dict[uuid.UUID, int], int]:
    """Check each task's escrow and settlement count against its state, and return what the
    tasks' final states imply: (the buyer's wallet, each agent's earnings, the platform's fees),
    in satoshis."""
    tasks = (await session.execute(select(Task).where(Task.id.in_(world.tasks)))).scalars().all()
    wallet = DEPOSIT
    earned = dict.fromkeys(world.agents, 0)
    revenue = 0
    for task in tasks:
        escrow = await ledger_service.balance(session, ledger_service.escrow_name(task.id))
        open_ = task.status not in (
            TaskStatus.COMPLETED,
            TaskStatus.REJECTED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        )
        assert escrow == (task.escrow_sat if open_ else 0), (task.status, escrow)
        assert task.price_sat <= task.escrow_sat
        if open_:
            wallet -= task.escrow_sat
        elif task.status is TaskStatus.COMPLETED:
            assert task.agent_id is not None
            fee = pricing.fee_sat(task.price_sat, FEE_BPS)
            wallet -= task.price_sat
            earned[task.agent_id] += task.price_sat - fee
            revenue += fee
        settlements = (
            await session.execute(
                select(func.count(LedgerTransaction.id)).where(
                    LedgerTransaction.task_id == task.id,
                    LedgerTransaction.kind.in_(
                        [LedgerTransactionKind.ESCROW_RELEASE, LedgerTransactionKind.ESCROW_REFUND]
                    ),
                )
            )
        ).scalar_one()
        assert settlements == (0 if open_ else 1), (task.status, settlements)
    return wallet, earned, revenue


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prices=st.lists(st.integers(1, 5_000), min_size=3, max_size=3),
    complexities=st.lists(st.integers(1, 10), min_size=N_TASKS, max_size=N_TASKS),
    steps=st.lists(STEP, min_size=1, max_size=30),
    window=st.sampled_from([0.0, 3_600.0]),
)
def test_any_sequence_of_task_events_conserves_money_and_settles_once(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    prices: list[int],
    complexities: list[int],
    steps: list[tuple[str, int]],
    window: float,
) -> None:
    config = Settings(
        database_url=database_url,
        var_dir=tmp_path_factory.mktemp("var"),
        jwt_secret="x" * 40,
        platform_fee_bps=FEE_BPS,
        dispute_window_s=window,
        max_attempts=2,
        retry_backoff_s=0,
        exploration_epsilon=0.0,
        routing_seed=0,
    )
    asyncio.run(_scenario(database_url, config, prices, complexities, steps))
