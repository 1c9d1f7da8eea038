"""The gauges behind deploy/prometheus/alerts.yaml, read from /metrics after real state changes:
the ledger check, recent success rate, training failures, queue age and runners' leases."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from dukenet.agents.models import AgentKind
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.learning.models import TUNE_TRIGGER, TrainingRun, TrainingRunStatus
from dukenet.monitoring import metrics as metrics_module
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task
from tests.factories import create_admin, credit, register, replay_agent, submit_task

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("http://test/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def _market(
    client: httpx.AsyncClient, state: AppState, tasks: int
) -> tuple[dict[str, str], dict[str, object]]:
    """A replay agent and a funded buyer who submitted ``tasks`` tasks (none claimed yet)."""
    _, admin = await create_admin(state)
    agent = await replay_agent(client, admin)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**8)
    for _ in range(tasks):
        assert (await submit_task(client, headers, complexity=2)).status_code == 201
    return admin, agent


class TestLedgerCheck:
    async def test_a_balance_that_disagrees_with_its_entries_reads_not_ok(
        self, client: httpx.AsyncClient, state: AppState, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(metrics_module, "LEDGER_CHECK_INTERVAL_S", 0.0)
        await _market(client, state, tasks=1)
        before = await _scrape(client)
        assert before[("dukenet_ledger_check_ok", ())] == 1
        assert before[("dukenet_ledger_discrepancies", ())] == 0
        assert before[("dukenet_ledger_check_timestamp_seconds", ())] > 0

        async with state.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE ledger_account SET balance_sat = balance_sat + 1 "
                    "WHERE id = (SELECT id FROM ledger_account WHERE balance_sat > 0 LIMIT 1)"
                )
            )
        after = await _scrape(client)
        assert after[("dukenet_ledger_check_ok", ())] == 0
        assert after[("dukenet_ledger_discrepancies", ())] == 1

    async def test_the_gauges_agree_with_the_admins_ledger_check(
        self, client: httpx.AsyncClient, state: AppState, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(metrics_module, "LEDGER_CHECK_INTERVAL_S", 0.0)
        admin, _ = await _market(client, state, tasks=2)
        # One entry grows by 1 sat: its transaction no longer balances and its account's
        # cached balance no longer equals its entries.
        async with state.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE ledger_entry SET amount_sat = amount_sat + 1 "
                    "WHERE id = (SELECT id FROM ledger_entry WHERE amount_sat > 0 LIMIT 1)"
                )
            )
        check = (await client.get("/admin/ledger/check", headers=admin)).json()
        samples = await _scrape(client)
        assert check["ok"] is False
        assert samples[("dukenet_ledger_check_ok", ())] == 0
        found = len(check["discrepancies"]) + len(check["unbalanced_transactions"])
        assert samples[("dukenet_ledger_discrepancies", ())] == found == 2

    async def test_scrapes_within_the_interval_repeat_the_last_check(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market(client, state, tasks=1)
        first = await _scrape(client)
        async with state.engine.begin() as conn:
            await conn.execute(text("UPDATE ledger_account SET balance_sat = balance_sat + 1"))
        second = await _scrape(client)
        # The full scan ran once: the second scrape repeats its result and its time.
        assert second[("dukenet_ledger_check_ok", ())] == 1
        assert (
            second[("dukenet_ledger_check_timestamp_seconds", ())]
            == first[("dukenet_ledger_check_timestamp_seconds", ())]
        )


class TestOutcomes:
    async def test_recent_success_rate_is_the_share_of_successful_outcomes(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        empty = await _scrape(client)
        assert math.isnan(empty[("dukenet_recent_success_rate", ())])
        assert empty[("dukenet_recent_outcomes", ())] == 0

        admin, _ = await _market(client, state, tasks=4)
        runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
        while await runner.run_once():
            pass
        system = (await client.get("/admin/metrics", headers=admin)).json()
        samples = await _scrape(client)

        assert samples[("dukenet_recent_outcomes", ())] == system["outcomes"] == 4
        assert samples[("dukenet_recent_success_rate", ())] == system["success_rate"]
        successes = samples[("dukenet_outcomes", (("success", "true"),))]
        failures = samples[("dukenet_outcomes", (("success", "false"),))]
        assert successes + failures == 4
        assert successes == system["success_rate"] * 4

    async def test_the_window_holds_only_the_latest_outcomes(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        state.settings.success_drop_window = 2
        await _market(client, state, tasks=3)
        runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
        while await runner.run_once():
            pass
        samples = await _scrape(client)
        assert samples[("dukenet_recent_outcomes", ())] == 2
        total = sum(samples[("dukenet_outcomes", (("success", s),))] for s in ("true", "false"))
        assert total == 3


class TestTraining:
    async def test_failures_since_the_last_success_are_counted(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        start = utcnow() - timedelta(hours=1)
        runs = [
            (TrainingRunStatus.FAILED, 0),
            (TrainingRunStatus.SUCCEEDED, 1),
            (TrainingRunStatus.FAILED, 2),
            (TrainingRunStatus.FAILED, 3),
        ]
        async with state.sessionmaker() as session:
            for status, minute in runs:
                session.add(
                    TrainingRun(
                        trigger="outcomes",
                        trigger_key=uuid.uuid4().hex,
                        status=status,
                        started_at=start + timedelta(minutes=minute),
                        finished_at=start + timedelta(minutes=minute, seconds=30),
                    )
                )
            # a failed hyperparameter study is not a failed training run
            session.add(
                TrainingRun(
                    trigger=TUNE_TRIGGER,
                    trigger_key=uuid.uuid4().hex,
                    status=TrainingRunStatus.FAILED,
                    started_at=start + timedelta(minutes=4),
                )
            )
            await session.commit()

        samples = await _scrape(client)
        assert samples[("dukenet_training_consecutive_failures", ())] == 2
        assert samples[("dukenet_training_runs", (("status", "failed"),))] == 3
        assert samples[("dukenet_training_runs", (("status", "succeeded"),))] == 1
        succeeded_at = start + timedelta(minutes=1, seconds=30)
        assert samples[("dukenet_training_last_success_timestamp_seconds", ())] == pytest.approx(
            succeeded_at.timestamp(), abs=1e-3
        )

    async def test_no_training_reads_zero(self, client: httpx.AsyncClient) -> None:
        samples = await _scrape(client)
        assert samples[("dukenet_training_consecutive_failures", ())] == 0
        assert samples[("dukenet_training_last_success_timestamp_seconds", ())] == 0
        for status in ("running", "succeeded", "failed"):
            assert samples[("dukenet_training_runs", (("status", status),))] == 0


class TestQueueAndLeases:
    async def test_queue_age_is_the_longest_wait_for_a_claim(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market(client, state, tasks=2)
        async with state.engine.begin() as conn:
            an_hour_ago = utcnow() - timedelta(hours=1)
            oldest = await conn.execute(update(Task).values(created_at=an_hour_ago))
            assert oldest.rowcount == 2
        samples = await _scrape(client)
        age = samples[("dukenet_oldest_queued_task_age_seconds", (("agent_kind", "replay"),))]
        assert 3_600 <= age < 3_600 + 60

        runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
        while await runner.run_once():
            pass
        drained = await _scrape(client)
        key = ("dukenet_oldest_queued_task_age_seconds", (("agent_kind", "replay"),))
        assert drained[key] == 0

    async def test_a_task_in_retry_backoff_is_not_queued_yet(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market(client, state, tasks=1)
        async with state.engine.begin() as conn:
            await conn.execute(update(Task).values(available_at=utcnow() + timedelta(minutes=5)))
        samples = await _scrape(client)
        assert ("dukenet_oldest_queued_task_age_seconds", (("agent_kind", "replay"),)) not in (
            samples
        )

    async def test_a_lease_without_heartbeats_shows_its_age_and_expires(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, agent = await _market(client, state, tasks=1)
        async with state.sessionmaker() as session:
            task = await tasks_service.claim(
                session,
                agent_ids=[uuid.UUID(str(agent["id"]))],
                runner="silent-runner",
                lease_s=state.settings.lease_s,
            )
            assert task is not None
            await session.commit()
        fresh = await _scrape(client)
        heartbeat = ("dukenet_runner_heartbeat_age_seconds", (("agent_kind", "replay"),))
        expired = ("dukenet_expired_leases", (("agent_kind", "replay"),))
        assert 0 <= fresh[heartbeat] < 10
        assert fresh[expired] == 0

        # The runner went silent 100 s ago: its lease (lease_s = 30) ran out 70 s ago.
        silent_since = utcnow() - timedelta(seconds=100)
        async with state.engine.begin() as conn:
            await conn.execute(
                update(Task).values(
                    lease_expires_at=silent_since + timedelta(seconds=state.settings.lease_s)
                )
            )
        stale = await _scrape(client)
        assert 100 <= stale[heartbeat] < 110
        assert stale[expired] == 1

        async with state.sessionmaker() as session:
            assert await tasks_service.expire_leases(session, settings=state.settings) == 1
            await session.commit()
        swept = await _scrape(client)
        assert swept[heartbeat] == 0 and swept[expired] == 0
