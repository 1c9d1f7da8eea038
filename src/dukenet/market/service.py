"""Escrow, settlement and reputation updates; each call is part of the caller's unit of work."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents.models import Agent
from dukenet.errors import PaymentRequired
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind, LedgerTransaction, LedgerTransactionKind
from dukenet.ledger.service import Leg, NewAccount, UnknownAccount
from dukenet.market import pricing, reputation
from dukenet.market import repository as market_repository


def _settle_key(task_id: uuid.UUID) -> str:
    # One key for release and refund: a task's escrow is settled at most once, whichever way.
    return f"task:{task_id}:settle"


async def hold_escrow(
    session: AsyncSession, *, task_id: uuid.UUID, buyer_id: uuid.UUID, amount_sat: int
) -> LedgerTransaction:
    """Move the task's price from the buyer's wallet into the task's escrow account, which this
    transaction opens (one ``UPDATE`` of the wallet and the inserts; ``ledger.service.post``).

    Raises:
        PaymentRequired: the wallet does not cover ``amount_sat`` (or the buyer has none yet).
    """
    wallet = ledger_service.wallet_name(buyer_id)
    escrow = ledger_service.escrow_name(task_id)
    try:
        return await ledger_service.transfer(
            session,
            kind=LedgerTransactionKind.ESCROW_HOLD,
            debit=wallet,
            credit=escrow,
            amount_sat=amount_sat,
            task_id=task_id,
            idempotency_key=f"task:{task_id}:hold",
            memo="payment held in escrow",
            new_accounts=[NewAccount(escrow, LedgerAccountKind.ESCROW, buyer_id)],
        )
    except UnknownAccount:
        # A buyer never credited has no wallet yet: as an empty one, it covers nothing.
        raise PaymentRequired(
            f"insufficient balance in {wallet}: short by {amount_sat} sat"
        ) from None


async def release_escrow(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    agent_id: uuid.UUID,
    amount_sat: int,
    fee_bps: int,
    escrow_sat: int | None = None,
    buyer_id: uuid.UUID | None = None,
) -> LedgerTransaction:
    """Pay ``amount_sat`` (the agent's price) from the task's escrow to the agent, less the
    platform fee (``fee_bps`` basis points, rounded down), in one balanced transaction.

    ``escrow_sat`` is what the escrow holds (default ``amount_sat``); when a failover moved the
    task to a cheaper agent the difference returns to ``buyer_id``'s wallet in the same
    transaction. A task's escrow is settled at most once: a repeat returns the first settlement.

    Raises:
        ValueError: ``escrow_sat`` is below ``amount_sat``, or a remainder has no ``buyer_id``.
    """
    held = amount_sat if escrow_sat is None else escrow_sat
    if held < amount_sat:
        raise ValueError(f"escrow of {held} sat does not cover a price of {amount_sat} sat")
    if held > amount_sat and buyer_id is None:
        raise ValueError("a remainder of the escrow needs the buyer to return it to")
    fee = pricing.fee_sat(amount_sat, fee_bps)
    legs = [
        Leg(ledger_service.escrow_name(task_id), -held),
        Leg(ledger_service.agent_name(agent_id), amount_sat - fee),
    ]
    if fee:
        legs.append(Leg(ledger_service.PLATFORM_REVENUE, fee))
    if held > amount_sat:
        assert buyer_id is not None
        legs.append(Leg(ledger_service.wallet_name(buyer_id), held - amount_sat))
    legs = [leg for leg in legs if leg.amount_sat != 0]
    return await ledger_service.post(
        session,
        kind=LedgerTransactionKind.ESCROW_RELEASE,
        legs=legs,
        task_id=task_id,
        idempotency_key=_settle_key(task_id),
        memo="escrow released to agent",
    )


async def refund_escrow(
    session: AsyncSession, *, task_id: uuid.UUID, buyer_id: uuid.UUID, amount_sat: int
) -> LedgerTransaction:
    """Return the escrowed price to the buyer's wallet."""
    return await ledger_service.transfer(
        session,
        kind=LedgerTransactionKind.ESCROW_REFUND,
        debit=ledger_service.escrow_name(task_id),
        credit=ledger_service.wallet_name(buyer_id),
        amount_sat=amount_sat,
        task_id=task_id,
        idempotency_key=_settle_key(task_id),
        memo="escrow refunded to buyer",
    )


async def update_reputation(
    session: AsyncSession,
    agent: Agent,
    *,
    window: int,
    prior_successes: float,
    prior_failures: float,
    success_threshold: float,
    count_finished: bool = True,
    per_buyer_cap: float = 5.0,
    pinned_weight: float = 0.5,
) -> None:
    """Recompute the agent's smoothed success rate over its last ``window`` outcomes (a success:
    ``quality >= success_threshold``) and its price multiplier (``market.reputation``);
    ``count_finished`` adds one finished task (False when an outcome already counted changed,
    e.g. a buyer rejected a delivery). The outcomes are weighted against wash trading
    (``reputation.weighted_counts``: each buyer capped at ``per_buyer_cap`` tasks, pinned
    tasks weighing ``pinned_weight``, the operator's own purchases nothing)."""
    evidence = await market_repository.recent_evidence(
        session, agent.id, window=window, success_threshold=success_threshold
    )
    successes, total = reputation.weighted_counts(
        evidence, owner_id=agent.owner_id, per_buyer_cap=per_buyer_cap, pinned_weight=pinned_weight
    )
    rate = reputation.smoothed_success_rate(
        successes, total, prior_successes=prior_successes, prior_failures=prior_failures
    )
    agent.success_rate = rate
    agent.reputation_multiplier = reputation.reputation_multiplier(rate)
    if count_finished:
        agent.finished_tasks = agent.finished_tasks + 1
    await session.flush()
