"""ORM models of the ledger: accounts, transactions and their entries (integer satoshis)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, str_enum, utcnow


class LedgerAccountKind(StrEnum):
    """Kinds of ledger account.

    ``wallet``: a user's spendable balance; ``escrow``: money held for one task; ``agent``: an
    agent's earnings; ``revenue``: platform fees; ``payout``: money held for one payout between
    its request and its payment; ``external``: the outside world (deposits, payouts), the only
    account allowed below zero.
    """

    WALLET = "wallet"
    ESCROW = "escrow"
    AGENT = "agent"
    REVENUE = "revenue"
    PAYOUT = "payout"
    EXTERNAL = "external"


class LedgerAccount(IdMixin, Base):
    """One account; ``balance_sat`` is a cache of the sum of its entries (see ``check``)."""

    __tablename__ = "ledger_account"

    name: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[LedgerAccountKind] = mapped_column(
        str_enum(LedgerAccountKind, "ledger_account_kind", length=24)
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    balance_sat: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerTransactionKind(StrEnum):
    """Why money moved."""

    DEPOSIT = "deposit"
    ESCROW_HOLD = "escrow_hold"
    ESCROW_RELEASE = "escrow_release"
    ESCROW_REFUND = "escrow_refund"
    PAYOUT_HOLD = "payout_hold"
    PAYOUT_SETTLE = "payout_settle"
    PAYOUT_RETURN = "payout_return"


class LedgerTransaction(IdMixin, Base):
    """A balanced set of entries (their amounts sum to zero), written atomically."""

    __tablename__ = "ledger_transaction"

    kind: Mapped[LedgerTransactionKind] = mapped_column(
        str_enum(LedgerTransactionKind, "ledger_transaction_kind", length=24)
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    memo: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(IdMixin, Base):
    """One leg of a transaction: ``amount_sat`` > 0 credits the account, < 0 debits it."""

    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_entry_account_created", "account_id", "created_at"),)

    transaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ledger_transaction.id", ondelete="RESTRICT"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ledger_account.id", ondelete="RESTRICT")
    )
    amount_sat: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
