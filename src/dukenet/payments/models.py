"""ORM models of payouts and deposits (integer satoshis)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum


class PayoutStatus(StrEnum):
    """``requested → sending → paid | failed``, or ``requested → rejected``.

    ``requested``: the amount is held in the payout's ledger account, waiting for an admin;
    ``sending``: approved, the provider is paying it; ``paid``: the money left the agent for the
    destination; ``rejected`` (by an admin) and ``failed`` (the provider could not pay): the
    amount went back to the agent's account.
    """

    REQUESTED = "requested"
    SENDING = "sending"
    PAID = "paid"
    REJECTED = "rejected"
    FAILED = "failed"


FINAL_PAYOUT_STATUSES = frozenset({PayoutStatus.PAID, PayoutStatus.REJECTED, PayoutStatus.FAILED})


class PayoutDestination(StrEnum):
    """``wallet``: the operator's DukeNET wallet; ``external``: out of the platform through the
    payment provider (a Lightning invoice, or a destination booked in the ledger only)."""

    WALLET = "wallet"
    EXTERNAL = "external"


class Payout(IdMixin, TimestampMixin, Base):
    """An operator's request to move an agent's earnings to their wallet or out of the platform.

    ``destination_ref`` is the BOLT11 invoice (Lightning) or a free-form reference of the
    external destination (ledger-only provider); ``payment_hash`` is the Lightning payment's
    hash. ``provider`` is the provider that handles the external payment. ``reason`` is the
    rejection reason or the provider's failure message.
    """

    __tablename__ = "payout"
    __table_args__ = (
        CheckConstraint("amount_sat > 0", name="amount_positive"),
        UniqueConstraint(
            "requested_by_id", "idempotency_key", name="uq_payout_requester_idempotency_key"
        ),
        Index("ix_payout_status_created", "status", "created_at"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"), index=True)
    requested_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    amount_sat: Mapped[int] = mapped_column(BigInteger)
    destination: Mapped[PayoutDestination] = mapped_column(
        str_enum(PayoutDestination, "payout_destination")
    )
    destination_ref: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(40))
    payment_hash: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[PayoutStatus] = mapped_column(str_enum(PayoutStatus, "payout_status"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[uuid.UUID | None]
    decided_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class DepositStatus(StrEnum):
    """``pending`` (the invoice waits to be paid) ``→ credited | expired``."""

    PENDING = "pending"
    CREDITED = "credited"
    EXPIRED = "expired"


class Deposit(IdMixin, TimestampMixin, Base):
    """A user's deposit through the payment provider: a Lightning invoice credited to their
    wallet once it is paid (once: the ledger transaction's key is the payment hash)."""

    __tablename__ = "deposit"
    __table_args__ = (
        CheckConstraint("amount_sat > 0", name="amount_positive"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_deposit_user_idempotency_key"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    amount_sat: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(500), default="")
    provider: Mapped[str] = mapped_column(String(40))
    payment_hash: Mapped[str] = mapped_column(String(128), unique=True)
    payment_request: Mapped[str] = mapped_column(Text)
    status: Mapped[DepositStatus] = mapped_column(str_enum(DepositStatus, "deposit_status"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    credited_at: Mapped[datetime | None]
