"""API schemas of the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from dukenet.kit.schema import Schema
from dukenet.ledger.models import LedgerTransactionKind


class CreditRequest(Schema):
    """An admin's deposit into a user's wallet, in satoshis."""

    amount_sat: int = Field(gt=0, le=10**15)
    memo: str = Field(default="", max_length=500)


class EntryRead(Schema):
    """One ledger entry as shown with a task or a transaction."""

    account_name: str
    amount_sat: int


class TransactionRead(Schema):
    """A balanced ledger transaction with its entries."""

    id: uuid.UUID
    kind: LedgerTransactionKind
    task_id: uuid.UUID | None
    memo: str
    created_at: datetime
    entries: list[EntryRead]


class BalanceRead(Schema):
    """An account's balance in satoshis."""

    account_name: str
    balance_sat: int


class Discrepancy(Schema):
    """An account whose cached balance differs from the sum of its entries."""

    account_name: str
    cached_sat: int
    entries_sat: int


class LedgerCheckRead(Schema):
    """Reconciliation report: ``ok`` when every balance matches and every transaction balances."""

    ok: bool
    accounts: int
    transactions: int
    total_sat: int
    discrepancies: list[Discrepancy]
    unbalanced_transactions: list[uuid.UUID]


class MoneyBucket(StrEnum):
    """The width of a money series' buckets (UTC; weeks start on Monday)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


class MoneyPoint(Schema):
    """One bucket of the caller's money, in satoshis (all non-negative but ``paid_out_sat``).

    ``deposited_sat``: into the wallet from outside; ``spent_sat``: from the wallet into task
    (and judge fee) escrows; ``refunded_sat``: back from escrows to the wallet; ``earned_sat``:
    paid to the caller's agents from escrows, net of the platform fee; ``paid_out_sat``: taken
    from the agents' earnings for payouts, less payouts that failed and came back (so it can be
    negative in the bucket where a payout returns).
    """

    start: datetime
    deposited_sat: int = 0
    spent_sat: int = 0
    refunded_sat: int = 0
    earned_sat: int = 0
    paid_out_sat: int = 0


class MoneySeriesRead(Schema):
    """The caller's money over time: ``points`` cover [``since``, ``until``) in consecutive
    buckets of ``bucket_s`` seconds, empty buckets included, oldest first."""

    bucket: MoneyBucket
    bucket_s: int
    since: datetime
    until: datetime
    agent_id: uuid.UUID | None
    points: list[MoneyPoint]
