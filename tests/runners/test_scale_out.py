"""The scale-out path for real: several ``dukenet runner`` processes pull from one PostgreSQL
order book (FOR UPDATE SKIP LOCKED) while the API takes tasks; every task runs exactly once and
the ledger balances."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.learning.routerbench import complexity_of, load_routerbench
from dukenet.tasks.models import Task, TaskResult, TaskStatus
from tests.factories import create_admin, credit, register, replay_agent

pytestmark = [
    pytest.mark.slow,
    # Only PostgreSQL (SQLite is the single-machine default); indirect keeps conftest's cleanup.
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

N_TASKS = 60
N_RUNNERS = 3


async def test_runner_processes_share_the_order_book(
    client: httpx.AsyncClient, state: AppState, settings: Settings, tmp_path: Path
) -> None:
    _, admin = await create_admin(state)
    train = load_routerbench("train")
    for model in ("gpt-3.5-turbo-1106", "claude-instant-v1"):
        await replay_agent(client, admin, model=model, name=model, base_price_sat=500)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**9)

    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    env.update(
        {
            "DUKENET_DATABASE_URL": settings.resolved_database_url,
            "DUKENET_VAR_DIR": str(tmp_path / "runner-var"),
            "DUKENET_RUNNER_POLL_S": "0.05",
        }
    )
    runners = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dukenet",
            "runner",
            "--name",
            f"proc-{i}",
            env=env,
            stdout=(tmp_path / f"runner-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(N_RUNNERS)
    ]
    try:
        for prompt in train.prompts[:N_TASKS]:
            response = await client.post(
                "/tasks",
                headers=headers,
                json={"description": prompt, "complexity": complexity_of(prompt)},
            )
            assert response.status_code == 201, response.text
        for _ in range(600):
            async with state.sessionmaker() as session:
                finished = (
                    await session.execute(
                        select(func.count(Task.id)).where(
                            # The runners run with the default dispute window: a success is
                            # delivered and waits for the buyer.
                            Task.status.in_(
                                [TaskStatus.DELIVERED, TaskStatus.COMPLETED, TaskStatus.FAILED]
                            )
                        )
                    )
                ).scalar_one()
            if finished == N_TASKS:
                break
            await asyncio.sleep(0.1)
    finally:
        for proc in runners:
            proc.terminate()
        for proc in runners:
            await asyncio.wait_for(proc.wait(), timeout=20)
        errors = [(tmp_path / f"runner-{i}.log").read_text() for i in range(N_RUNNERS)]
    assert all(proc.returncode in (0, -15) for proc in runners), errors
    assert finished == N_TASKS, errors

    async with state.sessionmaker() as session:
        tasks = (await session.execute(select(Task))).scalars().all()
        results = (await session.execute(select(func.count(TaskResult.id)))).scalar_one()
        outcomes = (await session.execute(select(func.count(Outcome.id)))).scalar_one()
    assert results == outcomes == N_TASKS
    assert all(t.attempts == 1 for t in tasks)  # nobody claimed a task twice
    owners = {t.routing.get("agent_name") for t in tasks}
    assert owners <= {"gpt-3.5-turbo-1106", "claude-instant-v1"}
    check = (await client.get("/admin/ledger/check", headers=admin)).json()
    assert check["ok"] and check["total_sat"] == 0
