"""Property-based tests of the money with payouts and deposits: random sequences of the ledger
property tests' task events (``tests.ledger.test_properties``) interleaved with payout requests
(to the wallet or to Lightning invoices that succeed, fail or stay pending), double submits,
approvals (double ones, and ones that crash between ``sending`` and the payment), rejections,
payments resolved later, and Lightning deposits paid or expired and checked twice.

At the end: every account equals the sum of its entries and money sums to zero; no account but
the external ones is below zero; each payout's hold is open exactly while it is requested or
sending, and it was settled or returned at most once (never both); each invoice was paid at most
once; each agent holds what its tasks earned less what its payouts took; the operator's wallet
holds its paid wallet payouts; the buyer's wallet what its tasks and credited deposits imply."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts import repository as accounts_repository
from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.agents.models import Agent
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.errors import DukenetError
from dukenet.learning.serving import ChampionCache
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import (
    LedgerAccount,
    LedgerAccountKind,
    LedgerTransaction,
    LedgerTransactionKind,
)
from dukenet.payments import service
from dukenet.payments.models import (
    Deposit,
    DepositStatus,
    Payout,
    PayoutDestination,
    PayoutStatus,
)
from dukenet.payments.providers import EXTERNAL_LIGHTNING, PaymentProvider, open_provider
from dukenet.payments.schemas import DepositCreate, PayoutCreate
from dukenet.tasks import service as tasks_service
from dukenet.tasks.schemas import TaskCreate
from dukenet.tasks.sweeper import Sweeper
from tests.ledger.test_properties import FEE_BPS, N_TASKS, STEP, World, _step, _world, task_money
from tests.lightning_double import API_KEY, LightningDouble

N_PAYOUTS = 4
CLAIM_SUCCEED = ("claim", "succeed")
DESTINATIONS = ("wallet", "success", "fail", "pending")
# the unsaved administrator who decides (as the CLI's console admin)
ADMIN = User(id=uuid.UUID(int=0), email="console@localhost", role=UserRole.ADMIN)

PAYOUT_STEP = st.one_of(
    st.tuples(
        st.sampled_from(["request", "request_twice"]),
        st.integers(0, 2),  # agent
        st.sampled_from(DESTINATIONS),
        st.integers(0, 100),  # percent of the balance; 0: all of it
    ),
    st.tuples(
        st.sampled_from(["approve", "approve_twice", "approve_crash", "reject"]),
        st.integers(0, N_PAYOUTS - 1),
    ),
    st.tuples(st.just("resolve"), st.integers(0, N_PAYOUTS - 1), st.booleans()),
    st.tuples(st.just("deposit"), st.integers(1, 50_000), st.booleans()),
    st.tuples(st.just("sync")),
)
# "earn": claim and succeed in one step, so that agents have earnings to pay out more often
EARN_STEP = st.integers(0, N_TASKS - 1).map(lambda i: ("earn", i))
ANY_STEP = st.one_of(STEP.map(lambda s: ("task", *s)), EARN_STEP, PAYOUT_STEP, PAYOUT_STEP)


@dataclass
class Payments:
    """The operator, and the payouts and deposits made so far."""

    operator: User
    lightning_before_sat: int  # external:lightning before the scenario (examples share a database)
    payouts: list[uuid.UUID] = field(default_factory=list)
    invoices: dict[uuid.UUID, str] = field(default_factory=dict)  # payout -> payment hash
    deposits: list[uuid.UUID] = field(default_factory=list)


async def _approve(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    world: World,
    payout_id: uuid.UUID,
    *,
    crash: bool = False,
) -> None:
    """Approve as the endpoint does: commit ``sending``, then pay and commit (unless the
    process "crashes" in between)."""
    async with sessionmaker() as session:
        await service.approve(session, provider=provider, admin=ADMIN, payout_id=payout_id)
        await session.commit()
    if crash:
        return
    async with sessionmaker() as session:
        await service.send(session, provider=provider, payout_id=payout_id)
        await session.commit()


async def _payment_step(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    lightning: LightningDouble,
    world: World,
    payments: Payments,
    step: tuple[object, ...],
) -> None:
    op = step[0]
    if op in ("request", "request_twice"):
        _, agent_index, destination, percent = step
        assert isinstance(agent_index, int) and isinstance(percent, int)
        async with sessionmaker() as session:
            balances = [
                await ledger_service.balance(session, ledger_service.agent_name(a))
                for a in world.agents
            ]
        if not balances[agent_index]:  # ask for the richest agent's earnings instead
            agent_index = max(range(len(balances)), key=balances.__getitem__)
        agent_id, balance = world.agents[agent_index], balances[agent_index]
        amount = max(1, balance * percent // 100) if percent else None
        ref = None
        if destination != "wallet":
            ref = lightning.outside_invoice(amount or max(1, balance), outcome=destination)  # type: ignore[arg-type]
        data = PayoutCreate(
            agent_id=agent_id,
            amount_sat=None if ref else amount,
            destination=PayoutDestination.WALLET if ref is None else PayoutDestination.EXTERNAL,
            destination_ref=ref,
            idempotency_key=f"k-{len(payments.payouts)}" if op == "request_twice" else None,
        )
        for _ in range(2 if op == "request_twice" else 1):
            async with sessionmaker() as session:
                payout, created = await service.request_payout(
                    session, provider=provider, user=payments.operator, data=data
                )
                await session.commit()
            if created:
                payments.payouts.append(payout.id)
                if payout.payment_hash is not None:
                    payments.invoices[payout.id] = payout.payment_hash
    elif op in ("approve", "approve_twice", "approve_crash", "reject"):
        index = step[1]
        assert isinstance(index, int)
        if index >= len(payments.payouts):
            return
        payout_id = payments.payouts[index]
        if op == "reject":
            async with sessionmaker() as session:
                await service.reject(session, admin=ADMIN, payout_id=payout_id, reason="no")
                await session.commit()
            return
        for _ in range(2 if op == "approve_twice" else 1):
            await _approve(sessionmaker, provider, world, payout_id, crash=op == "approve_crash")
    elif op == "resolve":
        _, index, success = step
        assert isinstance(index, int) and isinstance(success, bool)
        if index < len(payments.payouts) and payments.payouts[index] in payments.invoices:
            payment_hash = payments.invoices[payments.payouts[index]]
            if lightning.is_pending(payment_hash):
                lightning.resolve_outgoing(payment_hash, success=success)
    elif op == "deposit":
        _, amount, paid = step
        assert isinstance(amount, int)
        async with sessionmaker() as session:
            deposit, _ = await service.create_deposit(
                session, provider=provider, user=world.buyer, data=DepositCreate(amount_sat=amount)
            )
            await session.commit()
        payments.deposits.append(deposit.id)
        if paid:
            lightning.settle_incoming(deposit.payment_hash)
        else:
            lightning.expire_incoming(deposit.payment_hash)
        for _ in range(2):
            async with sessionmaker() as session:
                await service.refresh_deposit(session, provider=provider, deposit_id=deposit.id)
                await session.commit()
    elif op == "sync":
        await service.sync(sessionmaker, provider=provider)


async def _scenario(
    url: str,
    config: Settings,
    lightning: LightningDouble,
    prices: list[int],
    steps: list[tuple[object, ...]],
) -> None:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        world = await _world(sessionmaker, config, prices)
        async with sessionmaker() as session:
            # Examples share the database: route this example's tasks to its own agents only.
            await session.execute(
                update(Agent).where(Agent.id.not_in(world.agents)).values(is_enabled=False)
            )
            agent = await agents_repository.get(session, world.agents[0])
            assert agent is not None
            operator = await accounts_repository.get(session, agent.owner_id)
            assert operator is not None
            for _ in range(N_TASKS):
                task, _ = await tasks_service.create(
                    session,
                    settings=config,
                    champion=ChampionCache(),
                    buyer=world.buyer,
                    data=TaskCreate(description="add two numbers", complexity=5),
                )
                world.tasks.append(task.id)
            await session.commit()
            lightning_before = await ledger_service.balance(session, EXTERNAL_LIGHTNING)
        payments = Payments(operator, lightning_before)
        # Two tasks are paid before the random steps, so that most requests find earnings.
        steps = [("earn", 0), ("earn", 1), *steps]
        async with open_provider(config) as provider:
            for step in steps:
                if step[0] in ("task", "earn"):
                    ops, index = (
                        (step[1:2], step[2]) if step[0] == "task" else (CLAIM_SUCCEED, step[1])
                    )
                    assert isinstance(index, int)
                    for op in ops:
                        assert isinstance(op, str)
                        async with sessionmaker() as session:
                            try:
                                await _step(session, config, world, op, world.tasks[index])
                                await session.commit()
                            except DukenetError:
                                await session.rollback()
                    continue
                # a refused action commits nothing: its session rolls back
                # a refused action commits nothing: its session rolls back
                with contextlib.suppress(DukenetError):
                    await _payment_step(sessionmaker, provider, lightning, world, payments, step)
            # Decide what is still requested: approve one, reject the next, and so on.
            for i in range(len(payments.payouts)):
                step = ("approve" if i % 2 == 0 else "reject", i)
                with contextlib.suppress(DukenetError):
                    await _payment_step(sessionmaker, provider, lightning, world, payments, step)
            await Sweeper(sessionmaker, config).sweep()
            await service.sync(sessionmaker, provider=provider)
        async with sessionmaker() as session:
            await _assert_money(session, world, payments, lightning)
    finally:
        await engine.dispose()


async def _count(session: AsyncSession, key: str, kind: LedgerTransactionKind) -> int:
    stmt = select(func.count(LedgerTransaction.id)).where(
        LedgerTransaction.idempotency_key == key, LedgerTransaction.kind == kind
    )
    return int((await session.execute(stmt)).scalar_one())


async def _assert_money(
    session: AsyncSession, world: World, payments: Payments, lightning: LightningDouble
) -> None:
    report = await ledger_service.check(session)
    assert report.ok and report.total_sat == 0, report
    accounts = (await session.execute(select(LedgerAccount))).scalars().all()
    for account in accounts:
        assert account.kind is LedgerAccountKind.EXTERNAL or account.balance_sat >= 0, account.name

    wallet, earned, _ = await task_money(session, world)
    operator_wallet = 0
    lightning_out = 0
    payouts = (
        (
            await session.execute(
                select(Payout).where(Payout.requested_by_id == payments.operator.id)
            )
        )
        .scalars()
        .all()
    )
    assert sorted(p.id for p in payouts) == sorted(payments.payouts)
    for payout in payouts:
        event(f"payout {payout.destination.value} {payout.status.value}")
        open_ = payout.status in (PayoutStatus.REQUESTED, PayoutStatus.SENDING)
        held = await ledger_service.balance(session, service.payout_account_name(payout.id))
        assert held == (payout.amount_sat if open_ else 0), (payout.status, held)
        prefix = f"payout:{payout.id}"
        assert await _count(session, f"{prefix}:hold", LedgerTransactionKind.PAYOUT_HOLD) == 1
        settled = await _count(session, f"{prefix}:settle", LedgerTransactionKind.PAYOUT_SETTLE)
        returned = await _count(session, f"{prefix}:return", LedgerTransactionKind.PAYOUT_RETURN)
        assert settled == int(payout.status is PayoutStatus.PAID), payout.status
        returned_states = (PayoutStatus.REJECTED, PayoutStatus.FAILED)
        assert returned == int(payout.status in returned_states), payout.status
        if payout.status is not PayoutStatus.REJECTED and payout.status is not PayoutStatus.FAILED:
            earned[payout.agent_id] -= payout.amount_sat
        if payout.payment_hash is not None:
            assert lightning.pay_calls(payout.payment_hash) <= 1
            # paid here iff the wallet paid it; failed here only if it did not
            if payout.status is PayoutStatus.PAID:
                assert lightning.is_paid(payout.payment_hash)
            if payout.status is PayoutStatus.FAILED:
                assert not lightning.is_paid(payout.payment_hash)
        if payout.status is PayoutStatus.PAID:
            if payout.destination is PayoutDestination.WALLET:
                operator_wallet += payout.amount_sat
            else:
                lightning_out += payout.amount_sat
    for agent_id, amount in earned.items():
        assert await ledger_service.balance(session, ledger_service.agent_name(agent_id)) == amount
    assert (
        await ledger_service.balance(session, ledger_service.wallet_name(payments.operator.id))
        == operator_wallet
    )

    deposits = (
        (await session.execute(select(Deposit).where(Deposit.user_id == world.buyer.id)))
        .scalars()
        .all()
    )
    credited = 0
    for deposit in deposits:
        event(f"deposit {deposit.status.value}")
        key = f"deposit:{deposit.provider}:{deposit.payment_hash}"
        count = await _count(session, key, LedgerTransactionKind.DEPOSIT)
        assert count == int(deposit.status is DepositStatus.CREDITED)
        assert deposit.status is not DepositStatus.PENDING  # every one was paid or expired
        credited += deposit.amount_sat if deposit.status is DepositStatus.CREDITED else 0
    buyer_wallet = ledger_service.wallet_name(world.buyer.id)
    assert await ledger_service.balance(session, buyer_wallet) == wallet + credited
    assert await ledger_service.balance(session, EXTERNAL_LIGHTNING) == (
        payments.lightning_before_sat + lightning_out - credited
    )


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prices=st.lists(st.integers(1, 5_000), min_size=3, max_size=3),
    steps=st.lists(ANY_STEP, min_size=5, max_size=40),
)
def test_any_sequence_of_tasks_payouts_and_deposits_conserves_money(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    lightning: LightningDouble,
    prices: list[int],
    steps: list[tuple[object, ...]],
) -> None:
    config = Settings(
        database_url=database_url,
        var_dir=tmp_path_factory.mktemp("var"),
        jwt_secret="x" * 40,
        platform_fee_bps=FEE_BPS,
        dispute_window_s=0.0,
        max_attempts=2,
        retry_backoff_s=0,
        exploration_epsilon=0.0,
        routing_seed=0,
        payment_provider="lightning",
        lightning_url=lightning.url,
        lightning_api_key=SecretStr(API_KEY),
        lightning_timeout_s=5.0,
    )
    asyncio.run(_scenario(database_url, config, lightning, prices, steps))
