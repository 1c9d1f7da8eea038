"""The ``winner``-mode settlement: one balanced ledger transaction pays the winner from its
escrow (less the platform fee; a failover's remainder back to the buyer) and refunds the
loser's whole escrow to the buyer."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.comparisons.models import Comparison
from dukenet.kit.orm import utcnow
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerTransaction, LedgerTransactionKind
from dukenet.ledger.service import Leg
from dukenet.market import pricing
from dukenet.tasks.models import Task, TaskStatus


def winner_legs(winner: Task, loser: Task, *, fee_bps: int) -> list[Leg]:
    """Return the legs (satoshis) of the settlement: the winner's escrow to its agent (the fee,
    rounded down, to the platform), the winner's unused escrow and the loser's escrow to the
    buyer's wallet. They sum to zero; zero legs are left out."""
    assert winner.agent_id is not None
    fee = pricing.fee_sat(winner.price_sat, fee_bps)
    refund = (winner.escrow_sat - winner.price_sat) + loser.escrow_sat
    legs = [
        Leg(ledger_service.escrow_name(winner.id), -winner.escrow_sat),
        Leg(ledger_service.escrow_name(loser.id), -loser.escrow_sat),
        Leg(ledger_service.agent_name(winner.agent_id), winner.price_sat - fee),
        Leg(ledger_service.PLATFORM_REVENUE, fee),
        Leg(ledger_service.wallet_name(winner.buyer_id), refund),
    ]
    return [leg for leg in legs if leg.amount_sat != 0]


async def pay_winner(
    session: AsyncSession,
    comparison: Comparison,
    *,
    winner: Task,
    loser: Task,
    fee_bps: int,
    loser_reason: str,
) -> LedgerTransaction | None:
    """Pay the winner and refund the loser in one transaction (idempotency key
    ``comparison:<id>:settle``), complete the winner and close the loser as ``rejected`` with
    ``loser_reason``. Returns the transaction (None when both escrows were empty)."""
    now = utcnow()
    legs = winner_legs(winner, loser, fee_bps=fee_bps)
    transaction = None
    if legs:
        transaction = await ledger_service.post(
            session,
            kind=LedgerTransactionKind.ESCROW_RELEASE,
            legs=legs,
            task_id=winner.id,
            idempotency_key=f"comparison:{comparison.id}:settle",
            memo=f"comparison {comparison.id}: winner paid, task {loser.id}'s escrow refunded",
        )
        comparison.settlement_transaction_id = transaction.id
    winner.status = TaskStatus.COMPLETED
    winner.finished_at = now
    loser.status = TaskStatus.REJECTED
    loser.rejection_reason = loser_reason
    loser.finished_at = now
    return transaction
