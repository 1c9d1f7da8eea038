"""Retraining triggers on a real database: N outcomes, schedule, success-rate drop, drift, and
the reaping of runs whose trainer died."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.agents.models import Agent, AgentKind
from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.learning import service, triggers
from dukenet.learning.models import Outcome, TrainingRun, TrainingRunStatus
from dukenet.learning.router import RouterConfig
from dukenet.tasks.models import Task, TaskStatus


def _settings(**overrides: object) -> Settings:
    base = Settings(retrain_every_n=1_000, trigger_min_new_outcomes=20, jwt_secret="x" * 40)
    return base.model_copy(update=overrides)


async def _seed(
    session: AsyncSession, successes: Sequence[bool], descriptions: Sequence[str] | None = None
) -> None:
    """Insert finished tasks with their outcomes (two agents, alternating)."""
    user = (await session.execute(select(User))).scalars().first()
    if user is None:
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.ADMIN)
        session.add(user)
        await session.flush()
    agents = (await session.execute(select(Agent))).scalars().all()
    if not agents:
        agents = [
            Agent(name=f"a{i}", kind=AgentKind.REPLAY, owner_id=user.id, base_price_sat=100)
            for i in range(2)
        ]
        session.add_all(agents)
        await session.flush()
    for i, success in enumerate(successes):
        text = descriptions[i] if descriptions else f"task number {uuid.uuid4().hex[:6]} {i}"
        task = Task(
            buyer_id=user.id,
            description=text,
            complexity=1 + i % 10,
            cost_weight=0.1,
            status=TaskStatus.COMPLETED,
            agent_id=agents[i % 2].id,
            price_sat=100,
            escrow_sat=100,
            max_attempts=3,
        )
        session.add(task)
        await session.flush()
        await service.record_outcome(
            session,
            task_id=task.id,
            agent_id=agents[i % 2].id,
            description=text,
            complexity=task.complexity,
            success=success,
            price_sat=100,
            propensity=0.5,
            model_version=None,
            routing={},
        )
    await session.commit()


async def _train(db_session: AsyncSession, database_url: str, tmp_path_models: object) -> None:
    from dukenet.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    result = await service.train(
        create_sessionmaker(engine),
        models_dir=tmp_path_models,  # type: ignore[arg-type]
        trigger="test",
        trigger_key=f"test:{uuid.uuid4()}",
        config=RouterConfig(),
    )
    await engine.dispose()
    assert result is not None


class TestOutcomeCount:
    async def test_fires_at_n_and_not_before(self, db_session: AsyncSession) -> None:
        settings = _settings(retrain_every_n=30, retrain_triggers=frozenset({"outcomes"}))
        await _seed(db_session, [True, False] * 14 + [True])
        assert await triggers.due_trigger(db_session, settings, now=utcnow()) is None
        await _seed(db_session, [True])
        due = await triggers.due_trigger(db_session, settings, now=utcnow())
        assert due is not None and due.name == "outcomes" and due.key == "outcomes-after:0#0"


class TestSchedule:
    async def test_fires_after_the_interval_with_a_new_outcome(
        self, db_session: AsyncSession, database_url: str, tmp_path: object
    ) -> None:
        settings = _settings(retrain_triggers=frozenset({"schedule"}), retrain_schedule_s=3600)
        await _seed(db_session, [True, False] * 15)
        await _train(db_session, database_url, tmp_path)
        now = utcnow()
        assert await triggers.due_trigger(db_session, settings, now=now) is None  # nothing new
        await _seed(db_session, [True])
        assert await triggers.due_trigger(db_session, settings, now=now) is None  # too soon
        later = now + timedelta(hours=2)
        due = await triggers.due_trigger(db_session, settings, now=later)
        assert due is not None and due.name == "schedule"


class TestSuccessDrop:
    async def test_fires_when_the_rolling_rate_crosses_the_threshold(
        self, db_session: AsyncSession, database_url: str, tmp_path: object
    ) -> None:
        settings = _settings(retrain_triggers=frozenset({"success-drop"}), success_drop_window=40)
        await _seed(db_session, [True] * 38 + [False] * 2)  # rolling 0.95 at training
        await _train(db_session, database_url, tmp_path)
        await _seed(db_session, [True] * 20)
        assert await triggers.due_trigger(db_session, settings, now=utcnow()) is None
        await _seed(db_session, [False] * 20)  # last 40: 20/40 = 0.5
        due = await triggers.due_trigger(db_session, settings, now=utcnow())
        assert due is not None and due.name == "success-drop" and "0.500" in due.reason

    async def test_a_market_that_was_always_below_does_not_retrain_every_few_outcomes(
        self, db_session: AsyncSession, database_url: str, tmp_path: object
    ) -> None:
        settings = _settings(retrain_triggers=frozenset({"success-drop"}))
        await _seed(db_session, [True, False] * 20)
        await _train(db_session, database_url, tmp_path)
        await _seed(db_session, [False] * 30)
        assert await triggers.due_trigger(db_session, settings, now=utcnow()) is None


async def test_the_rolling_rate_counts_a_graded_result_by_the_success_threshold(
    db_session: AsyncSession,
) -> None:
    await _seed(db_session, [True] * 4 + [False] * 4)
    outcomes = (await db_session.execute(select(Outcome))).scalars().all()
    for outcome in outcomes[:2]:
        outcome.quality = 0.3  # the agent said success; the buyer rated it 0.3
    await db_session.flush()
    strict = await triggers.rolling_success_rate(db_session, window=8, success_threshold=0.5)
    lenient = await triggers.rolling_success_rate(db_session, window=8, success_threshold=0.25)
    assert strict == pytest.approx(2 / 8)
    assert lenient == pytest.approx(4 / 8)


class TestDrift:
    def test_same_distribution_passes_and_a_shift_is_detected(self) -> None:
        rng = np.random.default_rng(0)
        same = triggers.drift_test({"x": rng.normal(size=300)}, {"x": rng.normal(size=300)})
        shifted = triggers.drift_test({"x": rng.normal(size=300)}, {"x": rng.normal(1.0, size=300)})
        assert same.min_p_adjusted > 0.01
        assert shifted.min_p_adjusted < 1e-6

    def test_rejects_mismatched_or_empty_samples(self) -> None:
        with pytest.raises(ValueError):
            triggers.drift_test({"x": np.ones(3)}, {"y": np.ones(3)})
        with pytest.raises(ValueError):
            triggers.drift_test({"x": np.ones(0)}, {"x": np.ones(3)})

    async def test_longer_tasks_after_training_trigger_drift(
        self, db_session: AsyncSession, database_url: str, tmp_path: object
    ) -> None:
        settings = _settings(retrain_triggers=frozenset({"drift"}))
        short = [f"short task {i}" for i in range(60)]
        await _seed(db_session, [True, False] * 30, short)
        await _train(db_session, database_url, tmp_path)
        long = [
            " ".join(["a much longer description of the work"] * 20) + str(i) for i in range(30)
        ]
        await _seed(db_session, [True] * 30, long)
        due = await triggers.due_trigger(db_session, settings, now=utcnow())
        assert due is not None and due.name == "drift"


class TestStaleRuns:
    async def test_a_run_whose_trainer_died_is_failed_and_its_trigger_retried(
        self, db_session: AsyncSession
    ) -> None:
        settings = _settings(retrain_every_n=10, retrain_triggers=frozenset({"outcomes"}))
        await _seed(db_session, [True, False] * 10)
        due = await triggers.due_trigger(db_session, settings, now=utcnow())
        assert due is not None
        db_session.add(
            TrainingRun(
                trigger=due.name,
                trigger_key=due.key,
                status=TrainingRunStatus.RUNNING,
                started_at=utcnow() - timedelta(hours=2),
            )
        )
        await db_session.commit()
        assert await service.reap_stale_runs(db_session, timeout_s=3600) == 1
        await db_session.commit()
        retry = await triggers.due_trigger(db_session, settings, now=utcnow())
        assert retry is not None and retry.key == "outcomes-after:0#1"
