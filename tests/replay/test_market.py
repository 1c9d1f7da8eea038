"""The replay driver in process: tasks that share a prompt each get their own recorded outcome
(the record is keyed by the dataset task id the market task carries), the summary names tasks
whose record could not be found or was ambiguous, and replay prices follow recorded costs when
asked."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.market.pricing import task_price_sat
from dukenet.replay import Complexity, Pricing
from dukenet.replay.dataset import RecordedOutcome, RecordedOutcomes, RecordedTask
from dukenet.replay.market import (
    ReplayOptions,
    ReplayRun,
    SubmittedTask,
    base_prices_sat,
    drive,
    format_summary,
    summarize,
    task_complexities,
)
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks.models import TaskResult
from tests.factories import create_admin, credit, register, replay_agent, submit_task

TWIN = "Is the sky blue on a clear day? Answer yes or no."
NEW_AGENT_MULTIPLIER = 1.2


def _outcome(task: str, agent: str, success: bool, cost: float) -> RecordedOutcome:
    return RecordedOutcome(task, agent, float(success), success, cost, f"{agent} on {task}")


def twins() -> RecordedOutcomes:
    """Two tasks with the same prompt and opposite outcomes for each agent, and a third task."""
    return RecordedOutcomes(
        "twins",
        (
            RecordedTask("a1", TWIN, "sky", 3),
            RecordedTask("a2", TWIN, "sky", 3),
            RecordedTask("u1", "Name a prime number above 10.", "math", 3),
        ),
        ("bot-a", "bot-b"),
        (
            _outcome("a1", "bot-a", True, 0.001),
            _outcome("a1", "bot-b", False, 0.002),
            _outcome("a2", "bot-a", False, 0.003),
            _outcome("a2", "bot-b", True, 0.004),
            _outcome("u1", "bot-a", True, 0.002),
            _outcome("u1", "bot-b", True, 0.006),
        ),
    )


async def _results(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, TaskResult]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(TaskResult))).scalars()
        return {str(r.task_id): r for r in rows}


async def _replay(
    client: httpx.AsyncClient, state: AppState, settings: Settings, options: ReplayOptions
) -> tuple[RecordedOutcomes, ReplayRun]:
    data = twins()
    _, admin = await create_admin(state)
    runner = Runner(
        state.sessionmaker,
        settings,
        {AgentKind.REPLAY: ReplayExecutor({data.name: data})},
        name="replay-test",
    )
    return data, await drive(client, admin, data, runner, options)


class TestTasksSharingAPrompt:
    async def test_each_gets_its_own_recorded_outcome(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings
    ) -> None:
        # Whichever agent the market picks, each task's result is its own record: by prompt,
        # a2 would get a1's (or nothing).
        data, run = await _replay(
            client, state, settings, ReplayOptions(shuffle=False, batch=10, buyers=1)
        )
        results = await _results(state.sessionmaker)
        assert len(run.tasks) == 3
        for submitted in run.tasks:
            assert submitted.external_id == submitted.task_id
            result = results[submitted.market_task_id]
            recorded = data.outcome(submitted.task_id, submitted.agent)
            assert recorded is not None
            assert result.meta["task_id"] == submitted.task_id
            assert result.success is recorded.success
            assert result.cost_usd == recorded.cost_usd
            assert result.text == recorded.response
        summary = summarize(data, run)
        assert summary["market"]["unrecorded"] == 0
        assert summary["market"]["without_record"] == {}
        assert "tasks without a record 0" in format_summary(summary)

    async def test_the_task_keeps_its_external_id(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        await replay_agent(client, admin)
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 100_000)
        created = await submit_task(client, headers, external_id="dataset-task-7")
        assert created.status_code == 201, created.text
        assert created.json()["external_id"] == "dataset-task-7"
        shown = await client.get(f"/tasks/{created.json()['id']}", headers=headers)
        assert shown.json()["external_id"] == "dataset-task-7"
        plain = await submit_task(client, headers)
        assert plain.json()["external_id"] is None
        for bad in ("", "t" * 201):
            refused = await submit_task(client, headers, external_id=bad)
            assert refused.status_code == 422
            assert "external_id" in refused.text


def _run(*tasks: SubmittedTask) -> ReplayRun:
    return ReplayRun(dataset="twins", agents={}, tasks=list(tasks), statuses={})


def _submitted(task_id: str, description: str, external_id: str | None) -> SubmittedTask:
    return SubmittedTask(task_id, str(uuid.uuid4()), "bot-a", 1_000, 3, description, external_id)


class TestSummaryNamesTasksWithoutARecord:
    def test_ambiguous_missing_mismatched_and_unrecorded_tasks_are_named(self) -> None:
        extra = ("m1", "w1", "v1")
        data = RecordedOutcomes(
            "twins",
            (*twins().tasks, *(RecordedTask(t, f"Task {t}.") for t in extra)),
            ("bot-a", "bot-b"),
            (
                *twins().outcomes,
                *(_outcome(t, "bot-a", True, 0.001) for t in ("m1", "w1")),
                _outcome("v1", "bot-b", True, 0.001),
            ),
        )
        run = _run(
            _submitted("a1", TWIN, None),  # an older server dropped the id: two candidates
            _submitted("a2", TWIN, None),
            _submitted("m1", "Task m1.", "gone"),  # an id the dataset does not hold
            _submitted("w1", "Another prompt entirely.", "w1"),
            _submitted("v1", "Task v1.", "v1"),  # bot-a never answered it
            _submitted("u1", "Name a prime number above 10.", "u1"),
        )
        summary = summarize(data, run)
        market = summary["market"]
        assert market["unrecorded"] == 5
        assert market["without_record"] == {
            "ambiguous": ["a1", "a2"],
            "missing": ["m1"],
            "mismatch": ["w1"],
            "unrecorded": ["v1"],
        }
        assert market["success_rate"] == pytest.approx(1 / 6, abs=1e-4)  # only u1 had a record
        printed = format_summary(summary)
        assert "tasks without a record 5 (ambiguous 2: a1, a2; missing 1: m1;" in printed

    def test_a_long_list_is_cut(self) -> None:
        ids = [f"x{i}" for i in range(8)]
        data = RecordedOutcomes(
            "many",
            tuple(RecordedTask(t, f"Task {t}.") for t in ids),
            ("bot-a",),
            tuple(_outcome(t, "bot-a", True, 0.001) for t in ids),
        )
        run = _run(*(_submitted(t, f"Task {t}.", f"other-{t}") for t in ids))
        printed = format_summary(summarize(data, run))
        assert "missing 8: x0, x1, x2, x3, x4, +3 more" in printed


class TestRecordedCostPricing:
    def test_the_old_spelling_and_the_new_option_are_the_same(self) -> None:
        assert ReplayOptions(complexity=Complexity.COST).pricing is Pricing.RECORDED_COST
        new = ReplayOptions(pricing=Pricing.RECORDED_COST)
        assert new.complexity is Complexity.COST
        assert ReplayOptions().pricing is Pricing.COMPLEXITY
        with pytest.raises(ValueError, match="cannot be combined with complexity 'text'"):
            ReplayOptions(pricing=Pricing.RECORDED_COST, complexity=Complexity.TEXT)

    def test_complexity_follows_the_tasks_cost_relative_to_each_agents_mean(self) -> None:
        data = twins()  # means: bot-a 0.002, bot-b 0.004
        complexity = task_complexities(data, Complexity.COST)
        # a1: (0.5 + 0.5) / 2 -> 2; a2: (1.5 + 1) / 2 -> 5; u1: (1 + 1.5) / 2 -> 5
        assert complexity == {"a1": 2, "a2": 5, "u1": 5}
        bases = base_prices_sat(data, ReplayOptions(pricing=Pricing.RECORDED_COST))
        assert bases == {"bot-a": 5_000, "bot-b": 10_000}  # mean USD / 4 x 10^7 sat/USD

    async def test_realised_prices_follow_recorded_costs(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings
    ) -> None:
        options = ReplayOptions(shuffle=False, batch=10, pricing=Pricing.RECORDED_COST)
        data, run = await _replay(client, state, settings, options)
        complexity = task_complexities(data, Complexity.COST)
        bases = base_prices_sat(data, options)
        for t in run.tasks:
            assert t.complexity == complexity[t.task_id]
            assert t.price_sat == task_price_sat(bases[t.agent], t.complexity, NEW_AGENT_MULTIPLIER)
        summary = summarize(data, run, pricing=options.pricing)
        assert summary["pricing"] == "recorded-cost"
        ratios = sorted(
            t.price_sat / (o.cost_usd * 1e7)
            for t in run.tasks
            if (o := data.outcome(t.task_id, t.agent)) is not None
        )
        assert summary["market"]["price_to_cost"] == pytest.approx(
            sum(ratios) / len(ratios), abs=1e-3
        )
        assert summary["market"]["price_to_cost_quantiles"]["p50"] == pytest.approx(
            ratios[1], abs=1e-3
        )
        assert "pricing recorded-cost" in format_summary(summary)
