"""Balanced double-entry transactions in integer satoshis, and their reconciliation.

Account names are stable strings: ``wallet:<user id>``, ``escrow:<task id>``,
``agent:<agent id>``, ``revenue:platform``, ``external:deposits``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from dukenet.accounts.models import User, UserRole
from dukenet.errors import DukenetError, NotFound, PaymentRequired
from dukenet.ledger import repository
from dukenet.ledger.models import (
    LedgerAccount,
    LedgerAccountKind,
    LedgerEntry,
    LedgerTransaction,
    LedgerTransactionKind,
)
from dukenet.ledger.schemas import (
    Discrepancy,
    LedgerCheckRead,
    MoneyBucket,
    MoneyPoint,
    MoneySeriesRead,
)

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


class UnknownAccount(ValueError):
    """A transaction names a ledger account that does not exist."""


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


@dataclass(frozen=True)
class NewAccount:
    """An account a transaction opens: it must not exist yet, and starts with the balance the
    transaction's legs give it."""

    name: str
    kind: LedgerAccountKind
    owner_id: uuid.UUID | None = None


async def post(
    session: AsyncSession,
    *,
    kind: LedgerTransactionKind,
    legs: Sequence[Leg],
    task_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    memo: str = "",
    new_accounts: Sequence[NewAccount] = (),
) -> LedgerTransaction:
    """Write one balanced transaction and update the cached balances; flush, never commit.

    Each existing account's balance moves in one ``UPDATE … RETURNING`` statement, which also
    locks its row; accounts are updated in name order (no deadlocks between concurrent
    transfers). The accounts in ``new_accounts`` are inserted with their final balance (a
    duplicate name fails the whole unit of work). With an ``idempotency_key`` already used, the
    earlier transaction is returned and nothing is written; a transaction that opens an
    account cannot have happened before, so that look-up is skipped for it (the key's unique
    constraint still refuses a duplicate).

    Raises:
        ValueError: the legs do not sum to zero or an amount is zero.
        UnknownAccount: a leg names an account that does not exist (a ``ValueError``).
        PaymentRequired: a non-external account would go below zero.
    """
    if not legs:
        raise ValueError("a transaction needs legs")
    if sum(leg.amount_sat for leg in legs) != 0:
        raise ValueError("ledger transaction is not balanced")
    if any(leg.amount_sat == 0 or not isinstance(leg.amount_sat, int) for leg in legs):
        raise ValueError("every leg needs a non-zero integer amount of satoshis")
    if idempotency_key is not None and not new_accounts:
        existing = await repository.get_transaction_by_key(session, idempotency_key)
        if existing is not None:
            return existing

    deltas: dict[str, int] = {}
    for leg in legs:
        deltas[leg.account] = deltas.get(leg.account, 0) + leg.amount_sat
    opened = {account.name: account for account in new_accounts}
    account_ids: dict[str, uuid.UUID] = {}
    for name in sorted(deltas.keys() - opened.keys()):
        row = await repository.add_balance_by_name(session, name, deltas[name])
        if row is None:
            raise UnknownAccount(f"unknown ledger account {name!r}")
        account_id, account_kind, new_balance = row
        _check_balance(name, account_kind, new_balance)
        account_ids[name] = account_id
        # The UPDATE ran in SQL; mirror its result on a loaded object without re-selecting.
        loaded = session.sync_session.identity_map.get(identity_key(LedgerAccount, account_id))
        if loaded is not None:
            set_committed_value(loaded, "balance_sat", new_balance)
    for name, new in opened.items():
        opening = deltas.get(name, 0)
        _check_balance(name, new.kind, opening)
        account = LedgerAccount(
            id=uuid.uuid4(), name=name, kind=new.kind, owner_id=new.owner_id, balance_sat=opening
        )
        session.add(account)
        account_ids[name] = account.id

    transaction = LedgerTransaction(
        id=uuid.uuid4(), kind=kind, task_id=task_id, idempotency_key=idempotency_key, memo=memo
    )
    session.add(transaction)
    # Flushed before its entries: the unit of work orders inserts only along relationships,
    # and these tables have foreign keys but no relationships.
    await session.flush()
    session.add_all(
        LedgerEntry(
            transaction_id=transaction.id,
            account_id=account_ids[leg.account],
            amount_sat=leg.amount_sat,
        )
        for leg in legs
    )
    await session.flush()
    session.info.setdefault(_WRITTEN, []).append((transaction, tuple(legs)))
    return transaction


# ``session.info`` key of the transactions a session posted, for ``written``.
_WRITTEN = "dukenet.ledger.written"


def written(session: AsyncSession, task_id: uuid.UUID) -> list[tuple[LedgerTransaction, list[Leg]]]:
    """Return the transactions of ``task_id`` that ``post`` wrote in this session, oldest
    first, each with its legs in the order ``repository.transactions_for_task`` lists entries
    (by amount): what reading them back would return, without the query."""
    return [
        (transaction, sorted(legs, key=lambda leg: leg.amount_sat))
        for transaction, legs in session.info.get(_WRITTEN, [])
        if transaction.task_id == task_id
    ]


def _check_balance(name: str, kind: LedgerAccountKind, balance_sat: int) -> None:
    if balance_sat < 0 and kind is not LedgerAccountKind.EXTERNAL:
        raise PaymentRequired(f"insufficient balance in {name}: short by {-balance_sat} sat")


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
    new_accounts: Sequence[NewAccount] = (),
) -> LedgerTransaction:
    """Move ``amount_sat`` from ``debit`` to ``credit`` in one balanced transaction (``post``;
    ``new_accounts`` are opened by it)."""
    if amount_sat <= 0:
        raise ValueError("amount_sat must be positive")
    return await post(
        session,
        kind=kind,
        legs=[Leg(debit, -amount_sat), Leg(credit, amount_sat)],
        task_id=task_id,
        idempotency_key=idempotency_key,
        memo=memo,
        new_accounts=new_accounts,
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


BUCKET_SECONDS = {MoneyBucket.HOUR: 3600, MoneyBucket.DAY: 86_400, MoneyBucket.WEEK: 604_800}
MAX_DAYS = {MoneyBucket.HOUR: 31, MoneyBucket.DAY: 366, MoneyBucket.WEEK: 366}
"""The longest window each bucket width may cover (days)."""
_BUCKET_ORIGIN_S = 4 * 86_400  # 1970-01-05, a Monday: weeks start on Mondays, UTC


def bucket_grid(
    bucket: MoneyBucket, days: int, *, now: datetime | None = None
) -> tuple[int, int, int]:
    """Return (first bucket's start in seconds since 1970, bucket width in s, bucket count) of
    the consecutive UTC buckets covering at least the last ``days`` days, the last holding
    ``now``; weeks start on Mondays.

    Raises:
        DukenetError: 422, ``days`` outside 1..``MAX_DAYS[bucket]``.
    """
    if not 1 <= days <= MAX_DAYS[bucket]:
        raise DukenetError(
            f"days: between 1 and {MAX_DAYS[bucket]} for {bucket.value} buckets", status_code=422
        )
    width = BUCKET_SECONDS[bucket]
    now_s = int((now or datetime.now(UTC)).timestamp())
    last_start = (now_s - _BUCKET_ORIGIN_S) // width * width + _BUCKET_ORIGIN_S
    count = max(1, -(-days * 86_400 // width))  # ceil: the window covers at least ``days``
    return last_start - (count - 1) * width, width, count


async def money_series(
    session: AsyncSession,
    *,
    user: User,
    bucket: MoneyBucket = MoneyBucket.DAY,
    days: int = 30,
    agent_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> MoneySeriesRead:
    """Return the caller's money over the last ``days`` days in ``bucket``-wide buckets: what
    their wallet received, spent and got back, and what their agents earned and paid out (see
    ``MoneyPoint``), summed from the ledger entries. The last bucket holds ``now``.

    ``agent_id`` restricts it to one agent's earnings account: the caller's own agent (an admin:
    any agent).

    Raises:
        DukenetError: 422, ``days`` outside 1..``MAX_DAYS[bucket]``.
        NotFound: ``agent_id`` is not an agent of the caller's.
    """
    since_s, width, count = bucket_grid(bucket, days, now=now)
    owner_id, kinds, name = user.id, [LedgerAccountKind.WALLET, LedgerAccountKind.AGENT], None
    if agent_id is not None:
        name = agent_name(agent_id)
        account = await repository.get_account_by_name(session, name)
        if account is None or account.owner_id is None:
            raise NotFound(f"agent {agent_id} not found")
        if account.owner_id != user.id and user.role is not UserRole.ADMIN:
            raise NotFound(f"agent {agent_id} not found")
        owner_id, kinds = account.owner_id, [LedgerAccountKind.AGENT]
    points = [
        MoneyPoint(start=datetime.fromtimestamp(since_s + i * width, UTC)) for i in range(count)
    ]
    rows = await repository.bucketed_sums(
        session,
        owner_id=owner_id,
        account_kinds=kinds,
        account_name=name,
        since_s=since_s,
        bucket_s=width,
    )
    tx = LedgerTransactionKind
    for index, account_kind, tx_kind, credits, debits in rows:
        if not 0 <= index < count:
            continue  # written after ``now`` (a clock given by the caller)
        point = points[index]
        if account_kind is LedgerAccountKind.WALLET:
            if tx_kind is tx.DEPOSIT:
                point.deposited_sat += credits
            elif tx_kind is tx.ESCROW_HOLD:
                point.spent_sat += debits
            elif tx_kind in (tx.ESCROW_REFUND, tx.ESCROW_RELEASE):
                point.refunded_sat += credits
        elif tx_kind is tx.ESCROW_RELEASE:
            point.earned_sat += credits
        elif tx_kind in (tx.PAYOUT_HOLD, tx.PAYOUT_RETURN):
            point.paid_out_sat += debits - credits
    return MoneySeriesRead(
        bucket=bucket,
        bucket_s=width,
        since=datetime.fromtimestamp(since_s, UTC),
        until=datetime.fromtimestamp(since_s + count * width, UTC),
        agent_id=agent_id,
        points=points,
    )
