"""A task's evaluator: attached at creation (the judge's fee held in escrow), run on delivery
(reference checks at once; the LLM judge later, by ``feedback.judge``), its verdict given to the
outcome as an ``evaluator`` label.

Nothing here imports ``tasks``: the task lifecycle calls in, and recomputes reputation itself.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents import repository as agents_repository
from dukenet.agents.models import AgentKind
from dukenet.errors import BadRequest, NotFound
from dukenet.feedback import evaluators
from dukenet.feedback.evaluators import EvaluatorSpec, JudgeSpec, Verdict
from dukenet.feedback.models import Evaluation, EvaluationStatus
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind, LedgerTransactionKind
from dukenet.market import pricing


def judge_escrow_name(task_id: uuid.UUID) -> str:
    """Return the ledger account holding a task's judge fee."""
    return f"escrow:judge:{task_id}"


async def attach(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    buyer_id: uuid.UUID,
    complexity: int,
    spec: EvaluatorSpec,
) -> Evaluation:
    """Attach an evaluator to a new task; for a judge, hold its fee (the judge agent's price at
    the task's complexity, in satoshis) from the buyer's wallet in ``judge_escrow_name``.

    Raises:
        NotFound: the judge agent does not exist or is disabled.
        BadRequest: the judge agent is not an ``llm`` agent.
        PaymentRequired: the wallet does not also cover the judge's fee.
    """
    evaluation = Evaluation(
        task_id=task_id, kind=spec.kind, spec=spec.model_dump(mode="json"), fee_sat=0
    )
    if isinstance(spec, JudgeSpec):
        judge = await agents_repository.get(session, spec.agent_id)
        if judge is None or not judge.is_enabled:
            raise NotFound(f"judge agent {spec.agent_id} not found or disabled")
        if judge.kind is not AgentKind.LLM:
            raise BadRequest(f"judge agent {judge.name} is a {judge.kind.value} agent, not llm")
        fee = pricing.task_price_sat(judge.base_price_sat, complexity, judge.reputation_multiplier)
        evaluation.judge_agent_id = judge.id
        evaluation.fee_sat = fee
        escrow = judge_escrow_name(task_id)
        await ledger_service.open_account(
            session, escrow, LedgerAccountKind.ESCROW, buyer_id, is_new=True
        )
        await ledger_service.transfer(
            session,
            kind=LedgerTransactionKind.ESCROW_HOLD,
            debit=ledger_service.wallet_name(buyer_id),
            credit=escrow,
            amount_sat=fee,
            task_id=task_id,
            idempotency_key=f"task:{task_id}:judge:hold",
            memo="judge fee held in escrow",
        )
    session.add(evaluation)
    await session.flush()
    return evaluation


async def get(session: AsyncSession, task_id: uuid.UUID) -> Evaluation | None:
    """Return the task's evaluation, or None when the buyer asked for none."""
    stmt = select(Evaluation).where(Evaluation.task_id == task_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def check_delivery(session: AsyncSession, task_id: uuid.UUID, text: str) -> Verdict | None:
    """Run the task's reference check on a delivered answer and record its verdict; return it,
    or None when the task has no reference check (none, or a judge, which runs later)."""
    evaluation = await get(session, task_id)
    if evaluation is None or evaluation.kind not in evaluators.REFERENCE_KINDS:
        return None
    spec = evaluators.SPEC_ADAPTER.validate_python(evaluation.spec)
    assert not isinstance(spec, JudgeSpec)
    verdict = evaluators.check(spec, text)
    evaluation.status = EvaluationStatus.DONE
    evaluation.attempts += 1
    evaluation.quality = verdict.quality
    evaluation.detail = verdict.detail
    await session.flush()
    return verdict


async def settle_judge_fee(
    session: AsyncSession, evaluation: Evaluation, *, buyer_id: uuid.UUID, paid: bool
) -> None:
    """Pay the held judge fee to the judge agent (``paid``) or refund it to the buyer, once:
    both share one idempotency key, so a repeat does nothing."""
    if evaluation.fee_sat <= 0 or evaluation.judge_agent_id is None:
        return
    escrow = judge_escrow_name(evaluation.task_id)
    if paid:
        credit = ledger_service.agent_name(evaluation.judge_agent_id)
        kind, memo = LedgerTransactionKind.ESCROW_RELEASE, "judge fee paid to the judge agent"
    else:
        credit = ledger_service.wallet_name(buyer_id)
        kind, memo = LedgerTransactionKind.ESCROW_REFUND, "judge fee refunded"
    await ledger_service.transfer(
        session,
        kind=kind,
        debit=escrow,
        credit=credit,
        amount_sat=evaluation.fee_sat,
        task_id=evaluation.task_id,
        idempotency_key=f"task:{evaluation.task_id}:judge:settle",
        memo=memo,
    )


def fail(evaluation: Evaluation, reason: str, detail: dict[str, Any] | None = None) -> None:
    """Mark an evaluation as unable to give a verdict, saying why (the label stays as it was)."""
    evaluation.status = EvaluationStatus.FAILED
    evaluation.error = reason[:2000]
    if detail is not None:
        evaluation.detail = detail
