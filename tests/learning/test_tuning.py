"""Optuna tuning of Duke: the study lives in the app's database (SQLite and PostgreSQL), only the
train side of the held-out split is used, and the result is recorded as a training run that the
next training reads."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from dukenet.accounts.models import User, UserRole
from dukenet.agents.models import Agent, AgentKind
from dukenet.cli import app as cli_app
from dukenet.db import create_engine, create_sessionmaker
from dukenet.errors import BadRequest
from dukenet.learning import repository, service, tuning
from dukenet.learning.evaluation import held_out_split
from dukenet.learning.models import TrainingRun
from dukenet.learning.router import OutcomeSample, RouterConfig
from dukenet.tasks.models import Task, TaskStatus

BASE = RouterConfig(n_features=2**14, agent_n_features=32)
"""The smallest hashed block of the search space (fast), so the base is the first trial."""

FEATURES = ("hashing",)


def _world(n_tasks: int = 48, seed: int = 0) -> list[OutcomeSample]:
    """Coder is good at code, quizzer at quizzes, generalist middling; every agent on every task."""
    rng = np.random.default_rng(seed)
    verbs = ["sort", "reverse", "parse", "merge", "count", "filter", "group", "rank"]
    nouns = ["numbers", "strings", "dates", "files", "prices", "words", "users", "tuples"]
    rates = {
        ("code", "coder"): 0.9,
        ("code", "quizzer"): 0.2,
        ("code", "generalist"): 0.6,
        ("quiz", "coder"): 0.3,
        ("quiz", "quizzer"): 0.9,
        ("quiz", "generalist"): 0.6,
    }
    samples = []
    for i in range(n_tasks):
        kind = "code" if i % 2 else "quiz"
        verb, noun = verbs[i % 8], nouns[(i // 8) % 8]
        text = (
            f"write a python function that will {verb} the {noun} #{i}"
            if kind == "code"
            else f"which statement about {noun} that {verb} is true? A) one B) two #{i}"
        )
        for agent in ("coder", "quizzer", "generalist"):
            success = bool(rng.random() < rates[(kind, agent)])
            samples.append(OutcomeSample(f"{kind}-{i}", text, 3 + i % 4, agent, success))
    return samples


def _tune(database_url: str, samples: list[OutcomeSample], **kwargs: object) -> tuning.TuningResult:
    options: dict[str, object] = {
        "n_trials": 3,
        "n_folds": 2,
        "features": FEATURES,
        "base": BASE,
        "study_name": f"test-{uuid.uuid4().hex[:8]}",
        **kwargs,
    }
    return tuning.tune(samples, database_url=database_url, **options)  # type: ignore[arg-type]


class TestSyncStorageUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("sqlite+aiosqlite:////var/lib/dukenet.db", "sqlite:////var/lib/dukenet.db"),
            ("sqlite+aiosqlite:///var/d.db", "sqlite:///var/d.db"),
            (
                "postgresql+asyncpg://duke:s3cret@db:5432/dukenet",
                "postgresql+psycopg://duke:s3cret@db:5432/dukenet",
            ),
            ("postgresql://db/dukenet", "postgresql+psycopg://db/dukenet"),
            (
                "postgresql+asyncpg://db/dukenet?ssl=require",
                "postgresql+psycopg://db/dukenet?sslmode=require",
            ),
        ],
    )
    def test_maps_the_async_driver_to_a_sync_one(self, url: str, expected: str) -> None:
        assert tuning.sync_storage_url(url) == expected

    def test_rejects_other_backends(self) -> None:
        with pytest.raises(ValueError):
            tuning.sync_storage_url("mysql+aiomysql://db/dukenet")


class TestTune:
    def test_study_is_stored_in_the_app_database(self, database_url: str) -> None:
        samples = _world()
        result = _tune(database_url, samples)
        assert result.n_trials == result.n_trials_run == 3
        train_side, held_out = held_out_split(samples, seed=0)
        assert held_out and result.n_outcomes == len(train_side)
        # The first trial is the base configuration; the best is never worse than it.
        assert result.default_value is not None
        assert result.best_value <= result.default_value
        assert 0.0 < result.best_value < np.log(2.0)  # better than a coin on these agents
        storage = tuning.open_storage(database_url)
        try:
            study = optuna.load_study(study_name=result.study_name, storage=storage)
            assert len(study.trials) == 3
            assert study.best_value == pytest.approx(result.best_value)
            assert study.trials[0].params == tuning.default_params(BASE)
        finally:
            tuning.close_storage(storage)

    def test_resuming_a_study_adds_trials(self, database_url: str) -> None:
        samples = _world()
        first = _tune(database_url, samples, n_trials=2)
        again = _tune(database_url, samples, n_trials=2, study_name=first.study_name)
        assert again.n_trials == 4 and again.n_trials_run == 2
        assert again.default_value is None  # not a new study
        assert again.best_value <= first.best_value

    def test_never_looks_at_the_held_out_rows(self, database_url: str) -> None:
        samples = _world()
        train_side, held_out = held_out_split(samples, seed=0)
        held_ids = {s.task_id for s in held_out}
        # Flip every held-out outcome but the first of its task (the split stratifies on that one).
        seen: set[str] = set()
        flipped = []
        for sample in samples:
            first = sample.task_id not in seen
            seen.add(sample.task_id)
            flip = sample.task_id in held_ids and not first
            flipped.append(
                dataclasses.replace(sample, success=not sample.success) if flip else sample
            )
        assert flipped != samples
        assert held_out_split(flipped, seed=0)[0] == train_side
        a = _tune(database_url, samples, seed=3)
        b = _tune(database_url, flipped, seed=3)
        assert a.best_params == b.best_params
        assert a.best_value == pytest.approx(b.best_value, abs=1e-12)
        # ... whereas the split seed decides which rows those are.
        c = _tune(database_url, samples, seed=3, split_seed=1)
        assert c.n_outcomes != a.n_outcomes or c.best_value != pytest.approx(a.best_value)

    def test_best_config_round_trips_through_from_dict(self, database_url: str) -> None:
        result = _tune(database_url, _world(), n_trials=4, seed=1)
        config = result.best_config
        assert RouterConfig.from_dict(dataclasses.asdict(config)) == config
        assert config.features == "hashing" and config.seed == BASE.seed

    def test_too_little_data_is_refused(self, database_url: str) -> None:
        with pytest.raises(BadRequest):
            _tune(database_url, _world(n_tasks=4))


class TestStorage:
    def test_an_unmigrated_sqlite_file_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(BadRequest, match="not migrated"):
            tuning.open_storage(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")


class TestRecord:
    async def test_without_a_tuning_training_uses_the_default(
        self, db_session: AsyncSession
    ) -> None:
        assert await tuning.training_config(db_session, seed=3) == RouterConfig(seed=3)

    async def test_latest_tuned_config_is_the_newest_tuning(
        self, db_session: AsyncSession, database_url: str
    ) -> None:
        assert await tuning.latest_tuned_config(db_session) is None
        await db_session.commit()  # release SQLite's write lock before the study writes
        first = await asyncio.to_thread(_tune, database_url, _world(), n_trials=2)
        run = await tuning.record_tuning(db_session, first)
        await db_session.commit()
        assert run.trigger == tuning.TUNE_TRIGGER and run.outcomes_used == 0
        assert run.metrics["study_name"] == first.study_name
        assert run.metrics["best_value"] == pytest.approx(first.best_value)
        assert run.metrics["n_trials"] == 2 and run.metrics["best_params"] == first.best_params
        tuned = await tuning.latest_tuned_config(db_session)
        assert tuned is not None and RouterConfig.from_dict(tuned) == first.best_config

        second = dataclasses.replace(
            first, study_name="later", best_config=dataclasses.replace(BASE, C=0.25)
        )
        await tuning.record_tuning(db_session, second)
        await db_session.commit()
        tuned = await tuning.latest_tuned_config(db_session)
        assert tuned is not None and RouterConfig.from_dict(tuned).C == 0.25
        # A tuning is not a training: the triggers' baselines do not move.
        assert await repository.last_successful_outcomes_used(db_session) == 0
        assert await repository.last_successful_run(db_session) is None
        # The next training uses the newest tuned configuration, with the trainer's seed.
        config = await tuning.training_config(db_session, seed=7)
        assert config == dataclasses.replace(second.best_config, seed=7)


async def _seed_outcomes(session: AsyncSession, samples: list[OutcomeSample]) -> None:
    """Insert finished tasks and their outcomes, one per sample (agents by name)."""
    user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.ADMIN)
    session.add(user)
    await session.flush()
    agents: dict[str, Agent] = {}
    for name in sorted({s.agent for s in samples}):
        agents[name] = Agent(name=name, kind=AgentKind.REPLAY, owner_id=user.id, base_price_sat=1)
        session.add(agents[name])
    await session.flush()
    for s in samples:
        task = Task(
            buyer_id=user.id,
            description=s.description,
            complexity=s.complexity,
            cost_weight=0.1,
            status=TaskStatus.COMPLETED,
            agent_id=agents[s.agent].id,
            price_sat=0,
            max_attempts=1,
        )
        session.add(task)
        await session.flush()
        await service.record_outcome(
            session,
            task_id=task.id,
            agent_id=agents[s.agent].id,
            description=s.description,
            complexity=s.complexity,
            success=s.success,
            price_sat=0,
            propensity=1.0,
            model_version=None,
            routing={},
        )
    await session.commit()


class TestRunTuning:
    async def test_tunes_on_recorded_outcomes_and_records_the_run(
        self, db_session: AsyncSession, database_url: str
    ) -> None:
        await _seed_outcomes(db_session, _world(n_tasks=24))
        engine = create_engine(database_url)
        try:
            result, run = await tuning.run_tuning(
                create_sessionmaker(engine),
                database_url=database_url,
                n_trials=2,
                n_folds=2,
                features=FEATURES,
                study_name=f"run-{uuid.uuid4().hex[:8]}",
            )
        finally:
            await engine.dispose()
        assert result.n_trials == 2
        assert 0 < result.n_outcomes < 24 * 3  # the train side only
        stored = (
            await db_session.execute(select(TrainingRun).where(TrainingRun.id == run.id))
        ).scalar_one()
        assert stored.config == dataclasses.asdict(result.best_config)
        assert await tuning.latest_tuned_config(db_session) == stored.config


class TestCli:
    def test_models_tune_prints_the_best_configuration(
        self, database_url: str, tmp_path: Path
    ) -> None:
        async def seed() -> None:
            engine = create_engine(database_url)
            async with create_sessionmaker(engine)() as session:
                await _seed_outcomes(session, _world(n_tasks=16))
            await engine.dispose()

        asyncio.run(seed())
        env = {
            "DUKENET_DATABASE_URL": database_url,
            "DUKENET_VAR_DIR": str(tmp_path / "var"),
            "DUKENET_JWT_SECRET": "x" * 40,
        }
        result = CliRunner().invoke(
            cli_app, ["models", "tune", "--trials", "2", "--folds", "2"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "2 trials, best log_loss" in result.output
        printed = result.output[result.output.index("{") :]
        config = RouterConfig.from_dict(json.loads(printed))
        assert config.features in ("hashing", "embedding")

        bad = CliRunner().invoke(cli_app, ["models", "tune", "--objective", "auc"], env=env)
        assert bad.exit_code == 2
