"""Admin exports of tasks, results and outcomes, in CSV and JSON Lines."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.learning.routerbench import complexity_of, load_routerbench
from dukenet.monitoring import exports
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent


async def _market(client: httpx.AsyncClient, state: AppState, n: int) -> dict[str, str]:
    _, admin = await create_admin(state)
    await replay_agent(client, admin, model="gpt-3.5-turbo-1106")
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**8)
    for prompt in load_routerbench("train").prompts[:n]:
        body = {"description": prompt, "complexity": complexity_of(prompt)}
        assert (await client.post("/tasks", headers=headers, json=body)).status_code == 201
    runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
    while await runner.run_once():
        pass
    return admin


async def test_every_row_is_exported_in_both_formats_across_pages(
    client: httpx.AsyncClient, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "PAGE_ROWS", 3)  # several pages from 7 rows
    admin = await _market(client, state, 7)
    for kind in ("tasks", "results", "outcomes"):
        response = await client.get(f"/admin/export/{kind}?format=csv", headers=admin)
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/csv"
        )
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 7 and len({r["id"] for r in rows}) == 7
        lines = (await client.get(f"/admin/export/{kind}?format=jsonl", headers=admin)).text
        records = [json.loads(line) for line in lines.splitlines()]
        assert [r["id"] for r in records] == [r["id"] for r in rows]
    outcome = records[0]
    assert set(outcome) >= {"task_id", "agent_id", "success", "quality", "propensity", "price_sat"}


async def test_exports_are_admin_only_and_validated(
    client: httpx.AsyncClient, state: AppState
) -> None:
    _, admin = await create_admin(state)
    _, buyer = await register(client)
    assert (await client.get("/admin/export/tasks", headers=buyer)).status_code == 403
    assert (await client.get("/admin/export/tasks")).status_code == 401
    assert (await client.get("/admin/export/wallets", headers=admin)).status_code == 422
    bad = await client.get("/admin/export/tasks?format=xml", headers=admin)
    assert bad.status_code == 422
    empty = await client.get("/admin/export/outcomes?format=jsonl", headers=admin)
    assert empty.status_code == 200 and empty.text == ""
