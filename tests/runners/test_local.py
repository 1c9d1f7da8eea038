"""The ``local`` agent end to end: a model fine-tuned by ``finetune.service`` (one SFT step on
the tiny random Llama from a real export) is registered, routed a buyer's task, executed by the
runner's in-process executor (loaded once, generating in a thread), paid and rated like any
agent; a model whose files no longer match the recorded hash is never served."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.finetune import service
from dukenet.finetune.trainer import Method, TrainConfig
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.ledger.service import agent_name
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
        (agent["dir"] / "config.json").write_text("{}")
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
