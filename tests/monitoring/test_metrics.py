"""The admins' system metrics and the Prometheus exposition, after real traffic."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.learning.routerbench import complexity_of, load_routerbench
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent

N_TASKS = 6


async def _traffic(client: httpx.AsyncClient, state: AppState) -> tuple[dict[str, str], int]:
    """Run N_TASKS replay tasks to the end and cancel one more; return (admin, its price)."""
    _, admin = await create_admin(state)
    await register(client, role="agent")
    await replay_agent(client, admin, model="gpt-3.5-turbo-1106")
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**8)
    prompts = load_routerbench("train").prompts[: N_TASKS + 1]
    for prompt in prompts[:N_TASKS]:
        body = {"description": prompt, "complexity": complexity_of(prompt)}
        assert (await client.post("/tasks", headers=headers, json=body)).status_code == 201
    runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
    while await runner.run_once():
        pass
    body = {"description": prompts[N_TASKS], "complexity": 1}
    task = (await client.post("/tasks", headers=headers, json=body)).json()
    cancelled = await client.post(f"/tasks/{task['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    return admin, int(task["price_sat"])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_system_metrics_add_up(client: httpx.AsyncClient, state: AppState) -> None:
    state.settings.dispute_window_s = 0.0  # successes pay the agent at once
    admin, _ = await _traffic(client, state)
    tasks = (await client.get("/tasks?limit=500", headers=admin)).json()["items"]
    completed = [t for t in tasks if t["status"] == "completed"]

    metrics = (await client.get("/admin/metrics", headers=admin)).json()

    assert metrics["tasks"] == N_TASKS + 1 == sum(metrics["tasks_by_status"].values())
    assert metrics["tasks_by_status"]["cancelled"] == 1
    assert metrics["tasks_by_status"].get("completed", 0) == len(completed)
    assert metrics["users"] == 3
    assert metrics["users_by_role"] == {"admin": 1, "agent": 1, "buyer": 1}
    assert metrics["active_agents"] == 1
    assert metrics["outcomes"] == metrics["training_samples"] == N_TASKS
    assert metrics["success_rate"] == len(completed) / N_TASKS
    # Released escrow only: the cancelled task's and failed tasks' refunds are not transacted.
    assert metrics["satoshis_transacted"] == sum(t["price_sat"] for t in completed)
    assert metrics["production_model_version"] is None
    assert metrics["production_model_samples"] is None

    trained = await client.post("/model/train", headers=admin)
    assert trained.status_code == 201, trained.text
    promoted = await client.post("/model/promote/1", headers=admin)
    assert promoted.status_code == 200, promoted.text
    after = (await client.get("/admin/metrics", headers=admin)).json()
    assert after["production_model_version"] == 1
    assert after["production_model_samples"] == N_TASKS


async def test_empty_marketplace_metrics(client: httpx.AsyncClient, state: AppState) -> None:
    _, admin = await create_admin(state)
    metrics = (await client.get("/admin/metrics", headers=admin)).json()
    assert metrics["tasks"] == 0 and metrics["tasks_by_status"] == {}
    assert metrics["success_rate"] is None and metrics["satoshis_transacted"] == 0


async def test_prometheus_has_requests_transitions_routing_and_settlements(
    app: object, client: httpx.AsyncClient, state: AppState
) -> None:
    state.settings.dispute_window_s = 0.0
    admin, cancelled_price = await _traffic(client, state)
    system = (await client.get("/admin/metrics", headers=admin)).json()

    response = await client.get("http://test/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    assert samples[
        (
            "dukenet_http_requests_total",
            (("method", "POST"), ("route", "/api/v2/tasks"), ("status", "201")),
        )
    ] == (N_TASKS + 1)
    assert samples[("dukenet_task_transitions_total", (("status", "assigned"),))] == N_TASKS + 1
    assert samples[("dukenet_task_transitions_total", (("status", "cancelled"),))] == 1
    assert samples[("dukenet_routing_seconds_count", ())] == N_TASKS + 1
    assert samples[("dukenet_settled_sat_total", (("direction", "refund"),))] >= cancelled_price
    # Database-wide gauges include what the runner (not this process's endpoints) did.
    for status, count in system["tasks_by_status"].items():
        assert samples[("dukenet_tasks", (("status", status),))] == count
    released = samples[("dukenet_ledger_moved_sat", (("kind", "escrow_release"),))]
    assert released == system["satoshis_transacted"]
    assert samples[("dukenet_ledger_moved_sat", (("kind", "deposit"),))] == 10**8
    assert samples[("dukenet_active_agents", ())] == 1
