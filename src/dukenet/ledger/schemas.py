"""API schemas of the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime

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
