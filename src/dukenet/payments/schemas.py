"""API schemas of the payments domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from dukenet.kit.schema import Schema
from dukenet.payments.models import DepositStatus, PayoutDestination, PayoutStatus

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Satoshis = Annotated[int, Field(gt=0, le=10**15)]


class PayoutCreate(Schema):
    """Request a payout of an agent's earnings, in satoshis.

    ``amount_sat`` omitted pays out the agent's whole balance (to a Lightning invoice: the
    invoice's amount). ``destination``: ``wallet`` (your DukeNET wallet) or ``external`` (out of
    the platform: ``destination_ref`` is a BOLT11 invoice with the Lightning provider, a free-form
    reference with the ledger-only one). A repeated ``idempotency_key`` returns the first payout.
    """

    agent_id: uuid.UUID
    amount_sat: Satoshis | None = None
    destination: PayoutDestination = PayoutDestination.WALLET
    destination_ref: str | None = Field(
        default=None, min_length=1, max_length=2000, pattern=r"^[\x21-\x7e]+$"
    )
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _destination_ref_matches(self) -> PayoutCreate:
        if self.destination is PayoutDestination.EXTERNAL and self.destination_ref is None:
            raise ValueError("destination_ref is required for an external payout")
        if self.destination is PayoutDestination.WALLET and self.destination_ref is not None:
            raise ValueError("destination_ref is only for external payouts")
        return self


class PayoutReject(Schema):
    """An admin's refusal of a requested payout; the amount returns to the agent."""

    reason: str = Field(min_length=1, max_length=2000)


class PayoutRead(Schema):
    """A payout and where it stands."""

    id: uuid.UUID
    agent_id: uuid.UUID
    requested_by_id: uuid.UUID
    amount_sat: int
    destination: PayoutDestination
    destination_ref: str | None
    provider: str
    payment_hash: str | None
    status: PayoutStatus
    idempotency_key: str | None
    reason: str | None
    decided_by_id: uuid.UUID | None
    decided_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AgentBalanceRead(Schema):
    """One agent's earnings in satoshis: ``balance_sat`` can be paid out; ``pending_sat`` is held
    by payouts requested or being sent."""

    agent_id: uuid.UUID
    name: str
    balance_sat: int
    pending_sat: int


class PayoutBalancesRead(Schema):
    """Every agent of the operator with its earnings, and the totals (satoshis)."""

    agents: list[AgentBalanceRead]
    total_sat: int
    pending_sat: int


class DepositCreate(Schema):
    """Deposit satoshis into your wallet through the payment provider (a Lightning invoice).

    A repeated ``idempotency_key`` returns the first deposit.
    """

    amount_sat: Satoshis
    memo: str = Field(default="", max_length=500, pattern=r"^[^\x00]*$")
    idempotency_key: IdempotencyKey | None = None


class DepositRead(Schema):
    """A deposit: pay ``payment_request`` and the wallet is credited ``amount_sat`` once."""

    id: uuid.UUID
    user_id: uuid.UUID
    amount_sat: int
    memo: str
    provider: str
    payment_hash: str
    payment_request: str
    status: DepositStatus
    idempotency_key: str | None
    credited_at: datetime | None
    created_at: datetime
