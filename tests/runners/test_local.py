"""The ``local`` agent end to end: a model fine-tuned by ``finetune.service`` (one SFT step on
the tiny random Llama from a real export, saved as a LoRA adapter) is registered, routed a
buyer's task, executed by the runner's in-process executor (base loaded and adapter merged once,
generating in a thread), paid and rated like any agent; an older fine-tune's merged model is
still served, with the same answers; a model whose files no longer match the recorded hash is
never served, and a runner without an adapter's base claims none of its tasks."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dukenet.agents.models import Agent, AgentKind
from dukenet.config import Settings
from dukenet.finetune import service
from dukenet.finetune.base_model import BASE_FILE, directory_sha256, load_base
from dukenet.finetune.trainer import Method, TrainConfig
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.ledger.service import agent_name
from dukenet.runners.base import WorkItem
from dukenet.runners.local import LocalExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks.models import TaskResult
from tests.factories import create_admin, credit, register, submit_task
from tests.finetune.exports import FAST, write_export
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

pytestmark = pytest.mark.slow

DEPOSIT = 10_000_000
PRICE_SAT = 1_000


async def _local_agent(state: AppState, settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """Fine-tune and register an enabled local agent; return its id, hash and admin headers."""
    _, admin = await create_admin(state)
    outcome = await service.finetune(
        state.sessionmaker,
        settings=settings,
        request=service.FinetuneRequest(
            method=Method.SFT,
            dataset=write_export("sft", tmp_path / "sft", questions=3),
            output_name="duke-local",
            base="tiny-random",
            # seed 1: this tiny random model's greedy answers are words (seed 0's are newlines,
            # which the executor refuses as no answer)
            config=TrainConfig(**{**FAST, "seed": 1}),
            base_price_sat=PRICE_SAT,
            max_new_tokens=8,
        ),
    )
    assert outcome.agent_id is not None and outcome.agent_enabled
    return {
        "id": str(outcome.agent_id),
        "sha256": outcome.result.artifact_sha256,
        "dir": outcome.result.artifact_dir,
        "admin": admin,
    }


async def _task(client: httpx.AsyncClient, buyer: dict[str, str], task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", headers=buyer)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


class TestLocalAgent:
    async def test_a_fine_tuned_model_answers_tasks_through_the_runner(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings, tmp_path: Path
    ) -> None:
        agent = await _local_agent(state, settings, tmp_path)
        buyer, buyer_headers = await register(client)
        await credit(client, agent["admin"], buyer["id"], DEPOSIT)
        executor = LocalExecutor(device="cpu")
        runner = Runner(state.sessionmaker, settings, {AgentKind.LOCAL: executor})
        paid = 0
        for question in ("What is 2 + 2?", "Name a prime number."):
            created = await submit_task(client, buyer_headers, description=question, complexity=2)
            assert created.status_code == 201, created.text
            assert created.json()["agent_id"] == agent["id"]
            paid += created.json()["price_sat"]
            assert await runner.run_once() is True
            task = await _task(client, buyer_headers, created.json()["id"])
            assert task["status"] == "completed", task
            assert task["result"]["text"].strip() and task["result"]["latency_ms"] > 0
            async with state.sessionmaker() as session:
                stmt = select(TaskResult).where(TaskResult.task_id == uuid.UUID(task["id"]))
                result = (await session.execute(stmt)).scalar_one()
            assert result.meta["artifact_sha256"] == agent["sha256"]
            assert result.meta["device"] == "cpu"
        assert await account_balance(state.sessionmaker, agent_name(uuid.UUID(agent["id"]))) == paid
        assert await wallet_balance(client, buyer_headers) == DEPOSIT - paid
        async with state.sessionmaker() as session:
            outcomes = list((await session.execute(select(Outcome))).scalars())
        assert len(outcomes) == 2 and all(str(o.agent_id) == agent["id"] for o in outcomes)
        listed = (await client.get(f"/agents/{agent['id']}", headers=buyer_headers)).json()
        assert listed["kind"] == "local" and listed["finished_tasks"] == 2
        await assert_ledger_balanced(client, agent["admin"], state.sessionmaker)

    async def test_a_model_whose_files_changed_is_not_served(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings, tmp_path: Path
    ) -> None:
        agent = await _local_agent(state, settings, tmp_path)
        (agent["dir"] / "adapter_config.json").write_text("{}")
        buyer, buyer_headers = await register(client)
        await credit(client, agent["admin"], buyer["id"], DEPOSIT)
        created = await submit_task(client, buyer_headers)
        assert created.status_code == 201, created.text
        runner = Runner(state.sessionmaker, settings, {AgentKind.LOCAL: LocalExecutor()})
        assert await runner.run_once() is True
        task = await _task(client, buyer_headers, created.json()["id"])
        assert task["status"] == "assigned" and task["result"] is None
        assert "do not match the recorded hash" in task["error"]
        assert await wallet_balance(client, buyer_headers) == DEPOSIT - created.json()["price_sat"]


class TestArtifactFormats:
    async def test_an_older_merged_model_is_still_served_with_the_same_answers(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings, tmp_path: Path
    ) -> None:
        agent = await _local_agent(state, settings, tmp_path)
        merged_dir = tmp_path / "merged"  # what fine-tunes wrote before adapters
        model, tokenizer = load_base(agent["dir"], device="cpu")
        model.save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
        merged_sha = directory_sha256(merged_dir)
        async with state.sessionmaker() as session, session.begin():
            row = await session.get(Agent, uuid.UUID(agent["id"]))
            assert row is not None
            adapter_config = dict(row.config)
            row.config = {
                **row.config,
                "artifact_path": str(merged_dir),
                "artifact_sha256": merged_sha,
            }
        buyer, buyer_headers = await register(client)
        await credit(client, agent["admin"], buyer["id"], DEPOSIT)
        created = await submit_task(client, buyer_headers, description="What is 2 + 2?")
        assert created.status_code == 201, created.text
        runner = Runner(
            state.sessionmaker, settings, {AgentKind.LOCAL: LocalExecutor(device="cpu")}
        )
        assert await runner.run_once() is True
        task = await _task(client, buyer_headers, created.json()["id"])
        assert task["status"] == "completed", task
        async with state.sessionmaker() as session:
            stmt = select(TaskResult).where(TaskResult.task_id == uuid.UUID(task["id"]))
            assert (await session.execute(stmt)).scalar_one().meta["artifact_sha256"] == merged_sha
        from_adapter = await LocalExecutor(device="cpu").execute(
            Agent(name="duke-local", config=adapter_config),
            WorkItem(description="What is 2 + 2?", complexity=2),
        )
        assert from_adapter.text == task["result"]["text"]

    async def test_a_runner_without_the_adapters_base_claims_none_of_its_tasks(
        self, state: AppState, settings: Settings, tmp_path: Path
    ) -> None:
        agent = await _local_agent(state, settings, tmp_path)
        async with state.sessionmaker() as session:
            row = await session.get(Agent, uuid.UUID(agent["id"]))
        assert row is not None
        executor = LocalExecutor(device="cpu")
        assert executor.handles(row)
        moved = tmp_path / "moved"
        shutil.copytree(agent["dir"], moved)
        reference = json.loads((moved / BASE_FILE).read_text())
        (moved / BASE_FILE).write_text(json.dumps({**reference, "spec": str(tmp_path / "gone")}))
        row.config = {**row.config, "artifact_path": str(moved)}
        assert not executor.handles(row)
