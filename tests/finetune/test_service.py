"""A fine-tune as the market records it: a training run with metrics and a hashed artifact, and
a ``local`` agent (or, in shadow, a disabled one); every failure names its problem, exits
non-zero from the CLI, registers nothing and leaves the router's champion alone."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from dukenet.agents.models import Agent, AgentKind
from dukenet.cli import app as cli_app
from dukenet.config import Settings
from dukenet.finetune import service
from dukenet.finetune.base_model import directory_bytes
from dukenet.finetune.errors import FinetuneError
from dukenet.finetune.trainer import Method, TrainConfig, directory_sha256
from dukenet.kit.state import AppState
from dukenet.learning import repository as learning_repository
from dukenet.learning import service as learning_service
from dukenet.learning.models import TrainingRun, TrainingRunStatus
from dukenet.monitoring import repository as monitoring_repository
from tests.factories import create_admin, credit, register, submit_task
from tests.finetune.exports import FAST, write_export

pytestmark = pytest.mark.slow


def request(dataset: Path, name: str, **changes: object) -> service.FinetuneRequest:
    """An SFT request on the tiny random model, one quick step."""
    base = service.FinetuneRequest(
        method=Method.SFT,
        dataset=dataset,
        output_name=name,
        base="tiny-random",
        config=TrainConfig(**FAST),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def runs(sessionmaker: async_sessionmaker[AsyncSession]) -> list[TrainingRun]:
    async with sessionmaker() as session:
        return list((await session.execute(select(TrainingRun))).scalars())


async def agents(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Agent]:
    async with sessionmaker() as session:
        return list((await session.execute(select(Agent))).scalars())


class TestShadowFinetune:
    async def test_a_shadow_fine_tune_is_recorded_and_registered_disabled(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
    ) -> None:
        _, admin = await create_admin(state)
        dataset = write_export("sft", tmp_path / "sft", questions=3)
        outcome = await service.finetune(
            sessionmaker, settings=settings, request=request(dataset, "duke-sft", shadow=True)
        )
        [run] = await runs(sessionmaker)
        assert run.id == outcome.run_id and run.status is TrainingRunStatus.SUCCEEDED
        assert run.trigger == "finetune-sft" and run.finished_at is not None
        assert run.artifact_path == str(outcome.result.artifact_dir)
        assert run.artifact_sha256 == directory_sha256(Path(run.artifact_path))
        assert run.metrics["artifact_bytes"] == outcome.result.artifact_bytes
        assert run.metrics["artifact_bytes"] == directory_bytes(Path(run.artifact_path))
        assert Path(run.artifact_path).parent == settings.var_dir / "finetune"
        assert run.metrics["steps"] == 1 and run.metrics["eval_examples"] == 2
        assert run.metrics["eval_loss_after"] > 0 and run.metrics["seconds_per_step"] > 0
        [agent] = await agents(sessionmaker)
        assert agent.id == outcome.agent_id and agent.kind is AgentKind.LOCAL
        assert agent.is_enabled is False and outcome.agent_enabled is False
        assert agent.config["shadow"] is True
        assert agent.config["artifact_sha256"] == run.artifact_sha256
        assert agent.config["training_run_id"] == str(run.id)
        assert agent.base_price_sat == settings.default_base_price_sat
        # in shadow no buyer's task is routed to it
        buyer, buyer_headers = await register(client)
        await credit(client, admin, buyer["id"], 10**6)
        response = await submit_task(client, buyer_headers)
        assert response.status_code == 400, response.text
        async with sessionmaker() as session:  # not a router version: the router's loop ignores it
            assert await learning_service.champion_version(session) is None
            assert await learning_repository.last_successful_run(session) is None
            assert await monitoring_repository.training_runs_by_status(session) == {
                "running": 0,
                "succeeded": 0,
                "failed": 0,
            }


class TestFailures:
    async def test_a_dataset_too_small_fails_the_run_and_registers_nothing(
        self,
        state: AppState,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
    ) -> None:
        await create_admin(state)
        dataset = write_export("sft", tmp_path / "sft", questions=1)
        with pytest.raises(FinetuneError, match="too small to hold out a test split"):
            await service.finetune(
                sessionmaker, settings=settings, request=request(dataset, "duke-small")
            )
        [run] = await runs(sessionmaker)
        assert run.status is TrainingRunStatus.FAILED
        assert "too small to hold out a test split" in run.log
        assert run.artifact_path is None
        assert await agents(sessionmaker) == []
        async with sessionmaker() as session:  # no router-training failure alert either
            assert await monitoring_repository.training_failures_since_success(session) == (0, None)
        assert not (settings.var_dir / "finetune").exists() or not any(
            (settings.var_dir / "finetune").iterdir()
        )

    async def test_problems_known_before_training_record_no_run(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
    ) -> None:
        dataset = write_export("sft", tmp_path / "sft", questions=3)
        with pytest.raises(FinetuneError, match="no active admin"):
            await service.finetune(sessionmaker, settings=settings, request=request(dataset, "d"))
        await create_admin(state)
        _, operator = await register(client, role="agent")
        taken = await client.post(
            "/agents",
            headers=operator,
            json={"name": "duke-taken", "kind": "human"},
        )
        assert taken.status_code == 201, taken.text
        cases = {
            "agent name 'duke-taken' is taken": request(dataset, "duke-taken"),
            "output name 'bad name!'": request(dataset, "bad name!"),
            "'nobody@example.com' is not an active admin": request(
                dataset, "d", owner_email="nobody@example.com"
            ),
            "not 'smollm2', 'tiny-random'": request(dataset, "d", base=str(tmp_path / "nope")),
            "a 'sft' export, not 'dpo'": request(dataset, "d", method=Method.DPO),
        }
        for problem, bad in cases.items():
            with pytest.raises(FinetuneError) as info:
                await service.finetune(sessionmaker, settings=settings, request=bad)
            assert problem in info.value.message
        assert await runs(sessionmaker) == []
        assert [a.name for a in await agents(sessionmaker)] == ["duke-taken"]


class TestCommand:
    async def test_the_command_names_the_problem_and_exits_non_zero(
        self,
        state: AppState,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await create_admin(state)
        monkeypatch.setenv("DUKENET_DATABASE_URL", settings.resolved_database_url)
        monkeypatch.setenv("DUKENET_VAR_DIR", str(settings.var_dir))
        dataset = write_export("dpo", tmp_path / "dpo", questions=1)
        runner = CliRunner()
        args = ["finetune", "dpo", "--dataset", str(dataset), "--output-name", "duke-dpo"]
        too_small = await _invoke(runner, [*args, "--base", "tiny-random"])
        assert too_small.exit_code == 1
        assert "too small to hold out a test split" in too_small.output
        no_base = await _invoke(runner, [*args, "--base", str(tmp_path / "missing")])
        assert no_base.exit_code == 1 and "base model" in no_base.output
        bad_method = await _invoke(runner, ["finetune", "ppo", *args[2:]])
        assert bad_method.exit_code == 2 and "No such command 'ppo'" in bad_method.output
        [run] = await runs(sessionmaker)  # only the too-small one got as far as a run
        assert run.status is TrainingRunStatus.FAILED and await agents(sessionmaker) == []


async def _invoke(runner: CliRunner, args: list[str]) -> Result:
    return await asyncio.to_thread(lambda: runner.invoke(cli_app, args))
