"""The ``replay`` agent answers RouterBench prompts with its model's recorded response and
judgement; end to end, a runner settles the task, writes the outcome and updates reputation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents.models import Agent, AgentKind
from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.learning.routerbench import FullInfoTable, load_routerbench
from dukenet.ledger.service import agent_name, escrow_name
from dukenet.replay.dataset import RecordedOutcome, RecordedOutcomes, RecordedTask, read_outcomes
from dukenet.runners.base import ExecutionError, WorkItem
from dukenet.runners.replay import NO_ANSWERS, ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent, submit_task
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance

MODEL = "gpt-4-1106-preview"
DEPOSIT = 100_000


@dataclass(frozen=True)
class Recorded:
    """One RouterBench prompt and what ``MODEL`` answered to it."""

    prompt: str
    response: str
    success: bool
    cost_usd: float
    sample_id: str


@pytest.fixture(scope="session")
def train_table() -> FullInfoTable:
    """RouterBench's training split (loaded once)."""
    return load_routerbench("train")


def _recorded(table: FullInfoTable, *, success: bool) -> Recorded:
    column = table.agents.index(MODEL)
    row = next(
        r
        for r in range(table.n_prompts)
        if bool(table.success[r, column]) is success and not table.missing[r, column]
    )
    return Recorded(
        prompt=table.prompts[row],
        response=str(table.responses[row, column]),
        success=success,
        cost_usd=float(table.cost_usd[row, column]),
        sample_id=table.task_ids[row],
    )


@pytest.fixture(scope="session")
def solved(train_table: FullInfoTable) -> Recorded:
    """A prompt ``MODEL`` answered correctly."""
    return _recorded(train_table, success=True)


@pytest.fixture(scope="session")
def missed(train_table: FullInfoTable) -> Recorded:
    """A prompt ``MODEL`` answered wrongly."""
    return _recorded(train_table, success=False)


@pytest.fixture(scope="session")
def replay_executor() -> ReplayExecutor:
    """One executor for the session: it loads both RouterBench splits on first use."""
    return ReplayExecutor()


def replay(model: str = MODEL) -> Agent:
    """An (unsaved) replay agent of ``model``."""
    return Agent(
        name=f"replay-{model}",
        kind=AgentKind.REPLAY,
        config={"dataset": "routerbench", "model": model},
    )


class TestReplayExecutor:
    async def test_a_known_prompt_gets_the_recorded_answer_and_judgement(
        self, replay_executor: ReplayExecutor, solved: Recorded, missed: Recorded
    ) -> None:
        for recorded in (solved, missed):
            execution = await replay_executor.execute(replay(), WorkItem(recorded.prompt, 3))
            assert execution.text == recorded.response
            assert execution.success is recorded.success
            assert execution.cost_usd == recorded.cost_usd
            assert execution.metadata == {
                "replay": "hit",
                "dataset": "routerbench",
                "model": MODEL,
                "task_id": recorded.sample_id,
                "quality": float(recorded.success),
            }

    async def test_an_unknown_prompt_is_an_unsuccessful_answer(
        self, replay_executor: ReplayExecutor
    ) -> None:
        execution = await replay_executor.execute(replay(), WorkItem("What is 2 + 2?", 1))
        assert execution.success is False
        assert execution.metadata == {
            "replay": "miss",
            "lookup": "missing",
            "dataset": "routerbench",
            "model": MODEL,
        }
        assert execution.cost_usd is None

    async def test_the_dataset_task_id_picks_the_record(
        self, replay_executor: ReplayExecutor, solved: Recorded, missed: Recorded
    ) -> None:
        item = WorkItem(solved.prompt, 3, external_id=solved.sample_id)
        execution = await replay_executor.execute(replay(), item)
        assert execution.metadata["task_id"] == solved.sample_id and execution.success is True
        # the id of another task with another prompt: no record is served
        wrong = WorkItem(solved.prompt, 3, external_id=missed.sample_id)
        execution = await replay_executor.execute(replay(), wrong)
        assert execution.success is False and execution.metadata["lookup"] == "mismatch"
        unknown = WorkItem(solved.prompt, 3, external_id="no-such-task")
        execution = await replay_executor.execute(replay(), unknown)
        assert execution.success is False and execution.metadata["lookup"] == "missing"
        assert execution.metadata["task_id"] == "no-such-task"

    async def test_a_model_missing_from_the_dataset_is_an_execution_error(
        self, replay_executor: ReplayExecutor, solved: Recorded
    ) -> None:
        with pytest.raises(ExecutionError, match="'gpt-9' is not in the routerbench dataset"):
            await replay_executor.execute(replay("gpt-9"), WorkItem(solved.prompt, 3))


TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_qa.csv"


def tiny_agent(model: str, dataset: str = "routerbench") -> Agent:
    """An (unsaved) replay agent of ``model`` in ``dataset``."""
    return Agent(name=model, kind=AgentKind.REPLAY, config={"dataset": dataset, "model": model})


class TestReplayExecutorOnAnyDataset:
    """The executor holds long-format datasets by name (the tiny sample held as ``routerbench``,
    the only dataset name replay agents may carry for now)."""

    @pytest.fixture
    def executor(self) -> ReplayExecutor:
        data = read_outcomes(TINY)
        partial = RecordedOutcomes(
            "routerbench",
            data.tasks,
            data.agents,
            tuple(o for o in data.outcomes if (o.task_id, o.agent) != ("q4", "smart-bot")),
        )
        return ReplayExecutor({"routerbench": partial})

    async def test_tasks_sharing_a_prompt_are_told_apart_by_their_id(self) -> None:
        prompt = "Is it raining?"
        data = RecordedOutcomes(
            "routerbench",
            (RecordedTask("t1", prompt), RecordedTask("t2", prompt)),
            ("bot",),
            (
                RecordedOutcome("t1", "bot", 1.0, True, 0.001, "yes"),
                RecordedOutcome("t2", "bot", 0.0, False, 0.002, "no"),
            ),
        )
        executor = ReplayExecutor({"routerbench": data})
        for task_id, success, text in (("t1", True, "yes"), ("t2", False, "no")):
            item = WorkItem(prompt, 2, external_id=task_id)
            execution = await executor.execute(tiny_agent("bot"), item)
            assert (execution.success, execution.text) == (success, text)
            assert execution.metadata["task_id"] == task_id
        # without an id the prompt alone cannot say which: no record is served
        execution = await executor.execute(tiny_agent("bot"), WorkItem(prompt, 2))
        assert execution.success is False and execution.cost_usd is None
        assert execution.text == NO_ANSWERS["ambiguous"]
        assert execution.metadata["lookup"] == "ambiguous"
        assert execution.metadata["candidates"] == ["t1", "t2"]

    async def test_the_recorded_outcome_with_its_quality(self, executor: ReplayExecutor) -> None:
        execution = await executor.execute(
            tiny_agent("cheap-bot"), WorkItem("Name the largest planet.", 2)
        )
        assert (execution.text, execution.success, execution.cost_usd) == ("Saturn", False, 0.0001)
        assert execution.metadata["quality"] == 0.2
        assert execution.metadata["task_id"] == "q3"

    async def test_an_unknown_task_or_an_unrecorded_pair_is_an_unsuccessful_answer(
        self, executor: ReplayExecutor
    ) -> None:
        for agent, prompt in (("smart-bot", "What is 2 + 2?"), ("smart-bot", "Spell 'necessary'.")):
            execution = await executor.execute(tiny_agent(agent), WorkItem(prompt, 2))
            assert execution.success is False
            assert execution.text == NO_ANSWERS[execution.metadata["lookup"]]
            assert execution.cost_usd is None
            assert execution.metadata["replay"] == "miss"
        assert execution.metadata["lookup"] == "unrecorded"  # smart-bot never answered q4
        assert execution.text == "no recorded answer of this model for this task"
        recorded = await executor.execute(
            tiny_agent("cheap-bot"), WorkItem("Spell 'necessary'.", 2)
        )
        assert recorded.success is True

    async def test_an_unknown_agent_is_an_execution_error(self, executor: ReplayExecutor) -> None:
        with pytest.raises(ExecutionError, match="'gpt-4-1106-preview' is not in the routerbench"):
            await executor.execute(tiny_agent(MODEL), WorkItem("Spell 'necessary'.", 2))

    async def test_a_dataset_this_runner_does_not_hold_is_an_execution_error(self) -> None:
        executor = ReplayExecutor({"tiny_qa": read_outcomes(TINY)})
        with pytest.raises(ExecutionError, match="dataset 'routerbench' is not loaded"):
            await executor.execute(tiny_agent("cheap-bot"), WorkItem("Spell 'necessary'.", 2))

    async def test_datasets_are_loaded_once_on_first_use(self) -> None:
        loads: list[int] = []

        def load() -> dict[str, RecordedOutcomes]:
            loads.append(1)
            return {"routerbench": read_outcomes(TINY)}

        executor = ReplayExecutor(load=load)
        assert loads == []
        for _ in range(2):
            await executor.execute(tiny_agent("cheap-bot"), WorkItem("Spell 'necessary'.", 2))
        assert loads == [1]


@pytest.fixture
def _fast_password_hashing(state: AppState) -> None:
    """Argon2 at its minimum cost: these tests exercise the flows, not the hash's strength."""
    state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


@dataclass
class Shop:
    """An admin's replay agent (base 1,000 sat), a buyer holding ``DEPOSIT`` sat, a runner."""

    admin: dict[str, str]
    buyer: dict[str, str]
    agent_id: str
    runner: Runner


@pytest.fixture
async def shop(
    _fast_password_hashing: None,
    client: httpx.AsyncClient,
    state: AppState,
    settings: Settings,
    replay_executor: ReplayExecutor,
) -> Shop:
    """A market with one replay agent and a runner that executes replay agents."""
    _, admin = await create_admin(state)
    agent = await replay_agent(client, admin, model=MODEL, base_price_sat=1_000)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], DEPOSIT)
    runner = Runner(state.sessionmaker, settings, {AgentKind.REPLAY: replay_executor}, name="rr")
    return Shop(admin, buyer_headers, agent["id"], runner)


async def _outcomes(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Outcome]:
    async with sessionmaker() as session:
        return list((await session.execute(select(Outcome))).scalars())


async def _shown(client: httpx.AsyncClient, shop: Shop, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=shop.buyer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestReplayRunner:
    async def test_a_recorded_success_completes_the_task_and_pays_the_agent(
        self,
        client: httpx.AsyncClient,
        shop: Shop,
        solved: Recorded,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        created = await submit_task(client, shop.buyer, description=solved.prompt, complexity=2)
        assert created.status_code == 201, created.text
        task_id, price = created.json()["id"], created.json()["price_sat"]
        assert price == 2_400

        assert await shop.runner.run_once() is True
        assert await shop.runner.run_once() is False  # nothing left to do

        task = await _shown(client, shop, f"/tasks/{task_id}")
        assert task["status"] == "completed"
        assert task["attempts"] == 1
        assert task["result"]["text"] == solved.response
        assert task["result"]["success"] is True
        assert task["result"]["cost_usd"] == solved.cost_usd
        assert await account_balance(sessionmaker, agent_name(uuid.UUID(shop.agent_id))) == price
        assert await account_balance(sessionmaker, escrow_name(uuid.UUID(task_id))) == 0
        assert await wallet_balance(client, shop.buyer) == DEPOSIT - price

        [outcome] = await _outcomes(sessionmaker)
        assert str(outcome.task_id) == task_id and str(outcome.agent_id) == shop.agent_id
        assert outcome.success is True and outcome.price_sat == price
        assert outcome.cost_usd == solved.cost_usd
        agent = await _shown(client, shop, f"/agents/{shop.agent_id}")
        assert agent["finished_tasks"] == 1
        assert agent["success_rate"] == pytest.approx(0.6)  # Beta(2, 2) after one success
        await assert_ledger_balanced(client, shop.admin, sessionmaker)

    async def test_a_recorded_failure_or_an_unknown_prompt_fails_the_task_with_a_refund(
        self,
        client: httpx.AsyncClient,
        shop: Shop,
        missed: Recorded,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        wrong = await submit_task(client, shop.buyer, description=missed.prompt, complexity=2)
        unknown = await submit_task(client, shop.buyer, description="Summarise my inbox.")
        held = wrong.json()["price_sat"] + unknown.json()["price_sat"]
        assert await wallet_balance(client, shop.buyer) == DEPOSIT - held

        assert await shop.runner.run_once() is True
        assert await shop.runner.run_once() is True

        task = await _shown(client, shop, f"/tasks/{wrong.json()['id']}")
        assert task["status"] == "failed"
        assert task["result"]["text"] == missed.response
        assert [t["kind"] for t in task["transactions"]] == ["escrow_hold", "escrow_refund"]
        task = await _shown(client, shop, f"/tasks/{unknown.json()['id']}")
        assert task["status"] == "failed"
        assert task["result"]["success"] is False
        assert task["result"]["text"] == "no recorded answer for this prompt"
        assert [t["kind"] for t in task["transactions"]] == ["escrow_hold", "escrow_refund"]

        assert await wallet_balance(client, shop.buyer) == DEPOSIT
        assert await account_balance(sessionmaker, agent_name(uuid.UUID(shop.agent_id))) == 0
        assert [o.success for o in await _outcomes(sessionmaker)] == [False, False]
        agent = await _shown(client, shop, f"/agents/{shop.agent_id}")
        assert agent["finished_tasks"] == 2
        assert agent["success_rate"] == pytest.approx(2 / 6)  # Beta(2, 2) after two failures
        await assert_ledger_balanced(client, shop.admin, sessionmaker)


class TestRunnerSelectsByDataset:
    async def test_a_runner_claims_only_tasks_of_datasets_its_executor_holds(
        self,
        client: httpx.AsyncClient,
        shop: Shop,
        solved: Recorded,
        state: AppState,
        settings: Settings,
    ) -> None:
        tiny = read_outcomes(TINY)
        other = Runner(
            state.sessionmaker,
            settings,
            {AgentKind.REPLAY: ReplayExecutor({"tiny-qa": tiny})},
            name="tiny-runner",
        )
        created = await submit_task(client, shop.buyer, description=solved.prompt, complexity=2)
        assert created.status_code == 201, created.text
        # The shop's agent replays RouterBench: a runner holding only tiny-qa leaves it alone.
        assert await other.run_once() is False
        assert await shop.runner.run_once() is True
        task = await _shown(client, shop, f"/tasks/{created.json()['id']}")
        assert task["status"] == "completed" and task["attempts"] == 1

    def test_handles_follows_the_held_dataset_names(self) -> None:
        def agent(dataset: str) -> Agent:
            return Agent(name="a", kind=AgentKind.REPLAY, config={"dataset": dataset, "model": "m"})

        assert ReplayExecutor().handles(agent("routerbench"))
        assert not ReplayExecutor().handles(agent("tiny-qa"))
        tiny = ReplayExecutor({"tiny-qa": read_outcomes(TINY)})
        assert tiny.handles(agent("tiny-qa")) and not tiny.handles(agent("routerbench"))
        lazy = ReplayExecutor(load=lambda: {"x": read_outcomes(TINY)}, names=["x"])
        assert lazy.handles(agent("x"))
