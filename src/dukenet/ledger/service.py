"""Balanced double-entry transactions in integer satoshis, and their reconciliation.

Account names are stable strings: ``wallet:<user id>``, ``escrow:<task id>``,
``agent:<agent id>``, ``revenue:platform``, ``external:deposits``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from dukenet.errors import PaymentRequired
from dukenet.ledger import repository
from dukenet.ledger.models import (
    LedgerAccount,
    LedgerAccountKind,
    LedgerEntry,
    LedgerTransaction,
    LedgerTransactionKind,
)
from dukenet.ledger.schemas import Discrepancy, LedgerCheckRead

EXTERNAL_DEPOSITS = "external:deposits"
PLATFORM_REVENUE = "revenue:platform"


def wallet_name(user_id: uuid.UUID) -> str:
    """Return the ledger account name of a user's wallet."""
    return f"wallet:{user_id}"


def escrow_name(task_id: uuid.UUID) -> str:
    """Return the ledger account name of a task's escrow."""
    return f"escrow:{task_id}"


def agent_name(agent_id: uuid.UUID) -> str:
    """Return the ledger account name of an agent's earnings."""
    return f"agent:{agent_id}"


@dataclass(frozen=True)
class Leg:
    """One side of a transfer: ``amount_sat`` > 0 credits ``account``, < 0 debits it."""

    account: str
    amount_sat: int


async def open_account(
    session: AsyncSession,
    name: str,
    kind: LedgerAccountKind,
    owner_id: uuid.UUID | None = None,
    *,
    is_new: bool = False,
) -> LedgerAccount:
    """Return the account called ``name``, creating it if missing (safe under concurrency).

    ``is_new=True`` skips the look-up and the savepoint for a name nobody else can be creating
    (a new task's escrow); a duplicate then fails the whole unit of work.
    """
    if is_new:
        account = LedgerAccount(name=name, kind=kind, owner_id=owner_id, balance_sat=0)
        session.add(account)
        await session.flush()
        return account
    existing = await repository.get_account_by_name(session, name)
    if existing is not None:
        return existing
    account = LedgerAccount(name=name, kind=kind, owner_id=owner_id, balance_sat=0)
    try:
        async with session.begin_nested():
            session.add(account)
    except IntegrityError:
        found = await repository.get_account_by_name(session, name)
        assert found is not None
        return found
    return account


async def ensure_system_accounts(session: AsyncSession) -> None:
    """Create the platform's own accounts if they do not exist yet."""
    await open_account(session, EXTERNAL_DEPOSITS, LedgerAccountKind.EXTERNAL)
    await open_account(session, PLATFORM_REVENUE, LedgerAccountKind.REVENUE)


async def post(
    session: AsyncSession,
    *,
    kind: LedgerTransactionKind,
    legs: Sequence[Leg],
    task_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    memo: str = "",
) -> LedgerTransaction:
    """Write one balanced transaction and update the cached balances; flush, never commit.

    Accounts are locked in name order (no deadlocks between concurrent transfers). With an
    ``idempotency_key`` already used, the earlier transaction is returned and nothing is written.

    Raises:
        ValueError: the legs do not sum to zero, an amount is zero, or an account is unknown.
        PaymentRequired: a non-external account would go below zero.
    """
    if not legs:
        raise ValueError("a transaction needs legs")
    if sum(leg.amount_sat for leg in legs) != 0:
        raise ValueError("ledger transaction is not balanced")
    if any(leg.amount_sat == 0 or not isinstance(leg.amount_sat, int) for leg in legs):
        raise ValueError("every leg needs a non-zero integer amount of satoshis")
    if idempotency_key is not None:
        existing = await repository.get_transaction_by_key(session, idempotency_key)
        if existing is not None:
            return existing

    accounts: dict[str, LedgerAccount] = {}
    for name in sorted({leg.account for leg in legs}):
        account = await repository.get_account_by_name(session, name, for_update=True)
        if account is None:
            raise ValueError(f"unknown ledger account {name!r}")
        accounts[name] = account

    transaction = LedgerTransaction(
        kind=kind, task_id=task_id, idempotency_key=idempotency_key, memo=memo
    )
    session.add(transaction)
    await session.flush()
    for leg in legs:
        account = accounts[leg.account]
        new_balance = await repository.add_balance(session, account.id, leg.amount_sat)
        if new_balance < 0 and account.kind is not LedgerAccountKind.EXTERNAL:
            raise PaymentRequired(
                f"insufficient balance in {leg.account}: short by {-new_balance} sat"
            )
        # The UPDATE ran in SQL; mirror its result on the loaded object without re-selecting.
        set_committed_value(account, "balance_sat", new_balance)
        session.add(
            LedgerEntry(
                transaction_id=transaction.id, account_id=account.id, amount_sat=leg.amount_sat
            )
        )
    await session.flush()
    return transaction


async def transfer(
    session: AsyncSession,
    *,
    kind: LedgerTransactionKind,
    debit: str,
    credit: str,
    amount_sat: int,
    task_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    memo: str = "",
) -> LedgerTransaction:
    """Move ``amount_sat`` from ``debit`` to ``credit`` in one balanced transaction (``post``)."""
    if amount_sat <= 0:
        raise ValueError("amount_sat must be positive")
    return await post(
        session,
        kind=kind,
        legs=[Leg(debit, -amount_sat), Leg(credit, amount_sat)],
        task_id=task_id,
        idempotency_key=idempotency_key,
        memo=memo,
    )


async def deposit(
    session: AsyncSession, *, user_id: uuid.UUID, amount_sat: int, memo: str = ""
) -> LedgerTransaction:
    """Credit a user's wallet from the outside world (an admin's credit)."""
    await open_account(session, wallet_name(user_id), LedgerAccountKind.WALLET, user_id)
    return await transfer(
        session,
        kind=LedgerTransactionKind.DEPOSIT,
        debit=EXTERNAL_DEPOSITS,
        credit=wallet_name(user_id),
        amount_sat=amount_sat,
        memo=memo or "deposit",
    )


async def balance(session: AsyncSession, name: str) -> int:
    """Return the cached balance of an account in satoshis (0 if it does not exist)."""
    account = await repository.get_account_by_name(session, name)
    return account.balance_sat if account is not None else 0


async def check(session: AsyncSession) -> LedgerCheckRead:
    """Recompute every balance from its entries and report any difference.

    ``total_sat`` is the sum of all cached balances; it is 0 in a consistent ledger because
    every transaction balances.
    """
    sums = await repository.entry_sums_by_account(session)
    accounts = await repository.all_accounts(session)
    discrepancies = [
        Discrepancy(account_name=a.name, cached_sat=a.balance_sat, entries_sat=sums.get(a.id, 0))
        for a in accounts
        if a.balance_sat != sums.get(a.id, 0)
    ]
    unbalanced = await repository.unbalanced_transactions(session)
    return LedgerCheckRead(
        ok=not discrepancies and not unbalanced,
        accounts=len(accounts),
        transactions=await repository.count_transactions(session),
        total_sat=sum(a.balance_sat for a in accounts),
        discrepancies=discrepancies,
        unbalanced_transactions=unbalanced,
    )
