"""Outcomes with a quality in [0, 1]: recording, the success threshold, and the logged routing
decision each outcome carries for off-policy evaluation."""

from __future__ import annotations

import math
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.agents.models import Agent, AgentKind
from dukenet.errors import BadRequest
from dukenet.learning import repository, service
from dukenet.learning.evaluation import score_to_quality
from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task, TaskStatus


async def _task(session: AsyncSession, cost_weight: float = 0.1) -> tuple[Task, Agent]:
    user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.ADMIN)
    session.add(user)
    await session.flush()
    agent = Agent(
        name=uuid.uuid4().hex[:8], kind=AgentKind.REPLAY, owner_id=user.id, base_price_sat=100
    )
    session.add(agent)
    await session.flush()
    task = Task(
        buyer_id=user.id,
        description="Summarise the report.",
        complexity=4,
        cost_weight=cost_weight,
        status=TaskStatus.COMPLETED,
        agent_id=agent.id,
        price_sat=100,
        escrow_sat=100,
        max_attempts=3,
    )
    session.add(task)
    await session.flush()
    return task, agent


async def _record(
    session: AsyncSession, task: Task, agent: Agent, *, success: bool, **extra: object
) -> Outcome:
    return await service.record_outcome(
        session,
        task_id=task.id,
        agent_id=agent.id,
        description=task.description,
        complexity=task.complexity,
        success=success,
        price_sat=100,
        propensity=0.5,
        model_version=None,
        routing={},
        **extra,  # type: ignore[arg-type]
    )


class TestRecordOutcome:
    async def test_quality_defaults_to_success(self, db_session: AsyncSession) -> None:
        task, agent = await _task(db_session)
        outcome = await _record(db_session, task, agent, success=False)
        assert outcome.quality == 0.0
        task2, agent2 = await _task(db_session)
        assert (await _record(db_session, task2, agent2, success=True)).quality == 1.0

    async def test_judged_quality_is_kept_and_labels_by_threshold(
        self, db_session: AsyncSession
    ) -> None:
        task, agent = await _task(db_session)
        quality = score_to_quality(6, scale_min=1, scale_max=10)  # 5/9
        await _record(db_session, task, agent, success=True, quality=quality)
        stored = [o for o in await repository.all_outcomes(db_session) if o.task_id == task.id]
        assert [o.quality for o in stored] == [pytest.approx(5 / 9)]
        assert [s.success for s in service.to_samples(stored)] == [True]
        assert [s.success for s in service.to_samples(stored, success_threshold=0.6)] == [False]

    @pytest.mark.parametrize("quality", [-0.1, 1.5, math.nan])
    async def test_quality_outside_unit_interval_is_refused(
        self, db_session: AsyncSession, quality: float
    ) -> None:
        task, agent = await _task(db_session)
        with pytest.raises(BadRequest):
            await _record(db_session, task, agent, success=True, quality=quality)

    async def test_cost_weights_come_from_the_task(self, db_session: AsyncSession) -> None:
        task, agent = await _task(db_session, cost_weight=0.25)
        await _record(db_session, task, agent, success=True)
        assert (await repository.outcome_cost_weights(db_session))[task.id] == 0.25


def _outcome(routing: dict[str, object], agent: str, quality: float = 0.8) -> Outcome:
    return Outcome(
        task_id=uuid.uuid4(),
        agent_id=uuid.UUID(agent),
        description="d",
        complexity=4,
        success=quality >= 0.5,
        quality=quality,
        price_sat=300,
        propensity=0.25,
        routing=routing,
    )


class TestLoggedDecision:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())

    def _receipt(self, chosen: str) -> dict[str, object]:
        return {
            "agent_id": chosen,
            "candidates": [
                {"agent_id": self.a, "price_sat": 100, "p_success": 0.4},
                {"agent_id": self.b, "price_sat": 300, "p_success": 0.9},
            ],
        }

    def test_reads_the_receipt(self) -> None:
        outcome = _outcome(self._receipt(self.b), self.b, quality=0.4)
        decision = service.logged_decision(
            outcome, cost_weight=0.5, reference_price_sat=1_000, success_threshold=0.3
        )
        assert decision is not None
        assert decision.candidates == (self.a, self.b) and decision.prices_sat == (100.0, 300.0)
        assert decision.chosen == 1 and decision.propensity == 0.25 and decision.success
        assert decision.value_sat == pytest.approx(1_000 * 4 / 0.5)
        free = service.logged_decision(outcome, cost_weight=0.0, reference_price_sat=1_000)
        assert free is not None and math.isinf(free.value_sat) and not free.success

    def test_unusable_rows_are_skipped(self) -> None:
        no_receipt = _outcome({}, self.a)
        failed_over = _outcome(self._receipt(self.a), self.b)  # routed to a, done by b
        for outcome in (no_receipt, failed_over):
            assert service.logged_decision(outcome, cost_weight=0.1, reference_price_sat=1) is None
        ok = _outcome(self._receipt(self.a), self.a)
        assert service.logged_decision(ok, cost_weight=None, reference_price_sat=1) is None
