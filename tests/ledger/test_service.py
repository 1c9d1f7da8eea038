"""Ledger and settlement arithmetic, worked through by hand: deposits, escrow holds, releases
with the platform fee (``fee = floor(price × bps / 10,000)``, to ``revenue:platform``), refunds,
and the transactions the ledger refuses."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.errors import PaymentRequired
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind, LedgerTransactionKind
from dukenet.ledger.service import (
    EXTERNAL_DEPOSITS,
    PLATFORM_REVENUE,
    Leg,
    agent_name,
    escrow_name,
    wallet_name,
)
from dukenet.market import service as market_service


async def _balances(session: AsyncSession, *names: str) -> list[int]:
    return [await ledger_service.balance(session, name) for name in names]


async def _assert_consistent(session: AsyncSession) -> None:
    report = await ledger_service.check(session)
    assert report.ok, report
    assert report.total_sat == 0


class TestSettlementArithmetic:
    async def test_deposit_hold_release_with_fee_and_refund(self, db_session: AsyncSession) -> None:
        session = db_session
        await ledger_service.ensure_system_accounts(session)
        buyer, agent = uuid.uuid4(), uuid.uuid4()
        await ledger_service.open_account(session, agent_name(agent), LedgerAccountKind.AGENT)
        wallet = wallet_name(buyer)

        await ledger_service.deposit(session, user_id=buyer, amount_sat=10_000)
        await session.commit()
        assert await _balances(session, wallet, EXTERNAL_DEPOSITS) == [10_000, -10_000]

        # Task 1: 3,600 sat held, released at 250 bps: fee 90, agent 3,510.
        task1 = uuid.uuid4()
        await market_service.hold_escrow(session, task_id=task1, buyer_id=buyer, amount_sat=3_600)
        await session.commit()
        assert await _balances(session, wallet, escrow_name(task1)) == [6_400, 3_600]
        settlement = await market_service.release_escrow(
            session, task_id=task1, agent_id=agent, amount_sat=3_600, fee_bps=250
        )
        await session.commit()
        assert await _balances(
            session, escrow_name(task1), agent_name(agent), PLATFORM_REVENUE
        ) == [0, 3_510, 90]
        # An escrow is settled at most once, whichever way: a repeat changes nothing.
        repeated = await market_service.release_escrow(
            session, task_id=task1, agent_id=agent, amount_sat=3_600, fee_bps=250
        )
        late_refund = await market_service.refund_escrow(
            session, task_id=task1, buyer_id=buyer, amount_sat=3_600
        )
        await session.commit()
        assert repeated.id == late_refund.id == settlement.id
        assert await _balances(session, wallet, agent_name(agent)) == [6_400, 3_510]

        # Task 2: 1,001 sat at 333 bps: 33.3333 sat of fee rounds down to 33, the agent gets 968.
        task2 = uuid.uuid4()
        await market_service.hold_escrow(session, task_id=task2, buyer_id=buyer, amount_sat=1_001)
        await market_service.release_escrow(
            session, task_id=task2, agent_id=agent, amount_sat=1_001, fee_bps=333
        )
        await session.commit()
        assert await _balances(session, wallet, agent_name(agent), PLATFORM_REVENUE) == [
            5_399,
            3_510 + 968,
            90 + 33,
        ]

        # Task 3: held, then refunded in full; no fee is taken on a refund.
        task3 = uuid.uuid4()
        await market_service.hold_escrow(session, task_id=task3, buyer_id=buyer, amount_sat=2_000)
        await session.commit()
        assert await ledger_service.balance(session, wallet) == 3_399
        await market_service.refund_escrow(session, task_id=task3, buyer_id=buyer, amount_sat=2_000)
        await session.commit()
        assert await _balances(session, wallet, escrow_name(task3), PLATFORM_REVENUE) == [
            5_399,
            0,
            123,
        ]

        # Task 4: without a fee the agent gets the whole price and revenue gets no leg.
        task4 = uuid.uuid4()
        await market_service.hold_escrow(session, task_id=task4, buyer_id=buyer, amount_sat=499)
        release = await market_service.release_escrow(
            session, task_id=task4, agent_id=agent, amount_sat=499, fee_bps=0
        )
        await session.commit()
        assert release.kind is LedgerTransactionKind.ESCROW_RELEASE
        assert await _balances(session, wallet, agent_name(agent), PLATFORM_REVENUE) == [
            4_900,
            3_510 + 968 + 499,
            123,
        ]

        # The buyer paid 5,100 sat for three completed tasks: 4,977 to the agent, 123 in fees.
        assert 10_000 - 4_900 == (3_510 + 968 + 499) + (90 + 33)
        await _assert_consistent(session)


class TestRefusedTransactions:
    async def test_overdraft_unbalanced_and_unknown_accounts_are_refused(
        self, db_session: AsyncSession
    ) -> None:
        session = db_session
        await ledger_service.ensure_system_accounts(session)
        buyer = uuid.uuid4()
        await ledger_service.deposit(session, user_id=buyer, amount_sat=100)
        await session.commit()
        wallet = wallet_name(buyer)

        with pytest.raises(PaymentRequired, match="short by 1 sat"):
            await market_service.hold_escrow(
                session, task_id=uuid.uuid4(), buyer_id=buyer, amount_sat=101
            )
        await session.rollback()
        assert await ledger_service.balance(session, wallet) == 100

        refused: list[tuple[list[Leg], str]] = [
            ([Leg(wallet, -10), Leg(PLATFORM_REVENUE, 9)], "not balanced"),
            ([Leg(wallet, 0), Leg(PLATFORM_REVENUE, 0)], "non-zero"),
            ([Leg(wallet, -10), Leg("agent:nobody", 10)], "unknown ledger account"),
            ([], "needs legs"),
        ]
        for legs, message in refused:
            with pytest.raises(ValueError, match=message):
                await ledger_service.post(session, kind=LedgerTransactionKind.DEPOSIT, legs=legs)
            await session.rollback()
        with pytest.raises(ValueError, match="positive"):
            await ledger_service.transfer(
                session,
                kind=LedgerTransactionKind.DEPOSIT,
                debit=EXTERNAL_DEPOSITS,
                credit=wallet,
                amount_sat=-5,
            )
        await session.rollback()

        assert await ledger_service.balance(session, wallet) == 100
        report = await ledger_service.check(session)
        assert report.ok and report.total_sat == 0 and report.transactions == 1
