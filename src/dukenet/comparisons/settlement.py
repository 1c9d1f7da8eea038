"""The ``winner``-mode settlement: the winner's task is paid from its escrow (less the platform
fee; a failover's remainder back to the buyer) and the loser's task is refunded its whole escrow,
each in a balanced ledger transaction of its own task, as a plain task's payment or refund is, so
each task's ledger lists its own money. Both are posted in the caller's unit of work: the pick or
the sweeper commits them, with the tasks' new states, at once or not at all."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.comparisons.models import Comparison
from dukenet.kit.orm import utcnow
from dukenet.ledger.models import LedgerTransaction
from dukenet.market import service as market_service
from dukenet.tasks.models import Task, TaskStatus


async def pay_winner(
    session: AsyncSession,
    comparison: Comparison,
    *,
    winner: Task,
    loser: Task,
    fee_bps: int,
    loser_reason: str,
) -> LedgerTransaction | None:
    """Pay the winner (``market.service.release_escrow`` on the winner's task) and refund the
    loser (``market.service.refund_escrow`` on the loser's task), complete the winner and close
    the loser as ``rejected`` with ``loser_reason``; only flushes.

    Each escrow is settled at most once (the tasks' ``task:<id>:settle`` idempotency keys); an
    empty escrow posts nothing. The comparison's ``settlement_transaction_id`` names the winner's
    payment, which is returned (None when the winner's escrow was empty).

    Raises:
        ValueError: the winner's escrow does not cover its price.
    """
    assert winner.agent_id is not None
    now = utcnow()
    payment = None
    if winner.escrow_sat:
        payment = await market_service.release_escrow(
            session,
            task_id=winner.id,
            agent_id=winner.agent_id,
            amount_sat=winner.price_sat,
            fee_bps=fee_bps,
            escrow_sat=winner.escrow_sat,
            buyer_id=winner.buyer_id,
        )
        comparison.settlement_transaction_id = payment.id
    if loser.escrow_sat:
        await market_service.refund_escrow(
            session, task_id=loser.id, buyer_id=loser.buyer_id, amount_sat=loser.escrow_sat
        )
    winner.status = TaskStatus.COMPLETED
    winner.finished_at = now
    loser.status = TaskStatus.REJECTED
    loser.rejection_reason = loser_reason
    loser.finished_at = now
    return payment
