"""Label provenance: an outcome carries the strongest label it was given (agent < evaluator <
buyer < curator), every label is kept, a relabel never counts the outcome twice; reference
evaluators attached to a task label its outcome at delivery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dukenet.agents.models import Agent
from dukenet.config import Settings
from dukenet.feedback import labels
from dukenet.kit.state import AppState
from dukenet.learning.models import LabelSource
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task
from tests.factories import claim_and_submit, create_admin, credit, llm_agent, register, submit_task

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
WINDOW_S = 3_600.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default test settings with a one-hour dispute window."""
    return settings.model_copy(update={"dispute_window_s": WINDOW_S})


@dataclass
class Market:
    admin: dict[str, str]
    buyer: dict[str, str]
    operator: dict[str, str]
    agent: dict[str, Any]


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState) -> Market:
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], 1_000_000)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT)
    return Market(admin, buyer_headers, operator, agent)


async def deliver(
    client: httpx.AsyncClient,
    market: Market,
    *,
    text: str = "42",
    success: bool = True,
    **task_fields: Any,
) -> str:
    """Create a task (pinned to the market's agent), claim it and submit ``text``; return its id."""
    created = await submit_task(client, market.buyer, agent_id=market.agent["id"], **task_fields)
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    submitted = await claim_and_submit(client, market.operator, task_id, text, success=success)
    assert submitted.status_code == 201, submitted.text
    return task_id


async def shown(client: httpx.AsyncClient, buyer: dict[str, str], task_id: str) -> dict[str, Any]:
    """Return ``GET /tasks/{task_id}/labels`` as the buyer."""
    response = await client.get(f"/tasks/{task_id}/labels", headers=buyer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def finished_tasks(state: AppState, agent_id: str) -> int:
    async with state.sessionmaker() as session:
        agent = await session.get(Agent, uuid.UUID(agent_id))
        assert agent is not None
        return agent.finished_tasks


class TestAgentReport:
    async def test_an_unchecked_success_is_the_agents_own_weak_label(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await deliver(client, market)
        body = await shown(client, market.buyer, task_id)
        assert body["label_source"] == "agent" and body["quality"] == 1.0
        assert body["label_confidence"] == labels.AGENT_CONFIDENCE
        assert [(x["source"], x["kind"]) for x in body["labels"]] == [("agent", "report")]
        assert body["evaluation"] is None

    async def test_the_dispute_window_passing_keeps_the_evaluators_label(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task_id = await deliver(
            client,
            market,
            text="The answer is (C).",
            evaluator={"kind": "choice", "reference": "B"},
        )
        async with state.sessionmaker() as session:
            task = await session.get(Task, uuid.UUID(task_id))
            assert task is not None
            task.accept_by = task.delivered_at  # the window is over
            await session.commit()
        async with state.sessionmaker() as session:
            assert await tasks_service.settle_due(session, settings=state.settings) == 1
            await session.commit()
        task = (await client.get(f"/tasks/{task_id}", headers=market.buyer)).json()
        assert task["status"] == "completed"  # the agent was paid: it delivered an answer
        body = await shown(client, market.buyer, task_id)
        assert body["label_source"] == "evaluator" and body["quality"] == 0.0


class TestReferenceEvaluators:
    @pytest.mark.parametrize(
        ("evaluator", "text", "quality"),
        [
            ({"kind": "choice", "reference": "b"}, "Let's think... the answer is (B)", 1.0),
            ({"kind": "choice", "reference": "B"}, "Answer: D", 0.0),
            ({"kind": "exact_match", "reference": "Paris"}, "  paris ", 1.0),
            ({"kind": "number", "reference": 3.14, "tolerance": 0.01}, "pi is about 3.141", 1.0),
            (
                {"kind": "number", "reference": 1000, "tolerance": 0.01, "relative": True},
                "it costs 1,020 sat",
                0.0,
            ),
            (
                {"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}},
                '```json\n{"a": 1}\n```',
                1.0,
            ),
            (
                {"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}},
                '{"b": 1}',
                0.0,
            ),
        ],
    )
    async def test_a_reference_check_labels_the_outcome_at_delivery(
        self,
        client: httpx.AsyncClient,
        market: Market,
        evaluator: dict[str, Any],
        text: str,
        quality: float,
    ) -> None:
        task_id = await deliver(client, market, text=text, evaluator=evaluator)
        body = await shown(client, market.buyer, task_id)
        assert body["label_source"] == "evaluator" and body["quality"] == quality
        assert body["evaluation"]["status"] == "done"
        assert body["evaluation"]["detail"]["passed"] is (quality == 1.0)
        assert [x["source"] for x in body["labels"]] == ["agent", "evaluator"]
        assert body["labels"][1]["kind"] == evaluator["kind"]

    async def test_an_agent_reported_failure_is_not_checked(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await deliver(
            client, market, success=False, evaluator={"kind": "exact_match", "reference": "42"}
        )
        body = await shown(client, market.buyer, task_id)
        assert body["label_source"] == "agent" and body["quality"] == 0.0
        assert body["evaluation"]["status"] == "pending"

    @pytest.mark.parametrize(
        "evaluator",
        [
            {"kind": "choice", "reference": "AB"},
            {"kind": "number", "reference": "nan"},
            {"kind": "json_schema", "json_schema": {"type": "no-such-type"}},
            {"kind": "regex", "reference": "x"},
            {"kind": "judge", "agent_id": str(uuid.uuid4()), "rubric": ""},
        ],
    )
    async def test_a_malformed_evaluator_is_refused_and_charges_nothing(
        self, client: httpx.AsyncClient, market: Market, evaluator: dict[str, Any]
    ) -> None:
        before = (await client.get("/users/me", headers=market.buyer)).json()
        response = await submit_task(client, market.buyer, evaluator=evaluator)
        assert response.status_code == 422, response.text
        after = (await client.get("/users/me", headers=market.buyer)).json()
        assert after == before


class TestRelabelling:
    async def test_the_strongest_source_wins_and_the_outcome_counts_once(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task_id = await deliver(
            client, market, text="4", evaluator={"kind": "number", "reference": 4}
        )
        assert (await shown(client, market.buyer, task_id))["label_source"] == "evaluator"
        rejected = await client.post(
            f"/tasks/{task_id}/reject", headers=market.buyer, json={"reason": "wrong units"}
        )
        assert rejected.status_code == 200, rejected.text
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("buyer", 0.0)
        assert body["labels"][-1]["detail"] == {"reason": "wrong units"}
        rated = await client.put(
            f"/tasks/{task_id}/feedback", headers=market.buyer, json={"rating": 4}
        )
        assert rated.status_code == 200, rated.text
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("buyer", 0.75)  # newest buyer label
        async with state.sessionmaker() as session:
            await labels.apply(
                session,
                task_id=uuid.UUID(task_id),
                source=LabelSource.CURATOR,
                kind="curator",
                quality=0.0,
                confidence=labels.CURATOR_CONFIDENCE,
                success_threshold=0.5,
            )
            # a weaker source given later is kept but does not win
            change = await labels.apply(
                session,
                task_id=uuid.UUID(task_id),
                source=LabelSource.EVALUATOR,
                kind="judge",
                quality=1.0,
                confidence=labels.JUDGE_CONFIDENCE,
                success_threshold=0.5,
            )
            await session.commit()
        assert not change.applied and not change.quality_changed
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("curator", 0.0)
        assert [x["applied"] for x in body["labels"]] == [True, True, True, True, True, False]
        assert await finished_tasks(state, market.agent["id"]) == 1

    async def test_accepting_labels_the_outcome_as_the_buyers_success(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await deliver(
            client, market, text="Answer: A", evaluator={"kind": "choice", "reference": "C"}
        )
        assert (await shown(client, market.buyer, task_id))["quality"] == 0.0
        for _ in range(2):  # a double accept labels once
            accepted = await client.post(f"/tasks/{task_id}/accept", headers=market.buyer)
            assert accepted.status_code == 200, accepted.text
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("buyer", 1.0)
        assert [x["kind"] for x in body["labels"]] == ["report", "choice", "accept"]

    async def test_labels_need_an_outcome_and_stay_private(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        queued = (await submit_task(client, market.buyer)).json()
        response = await client.get(f"/tasks/{queued['id']}/labels", headers=market.buyer)
        assert response.status_code == 404
        task_id = await deliver(client, market)
        _, stranger = await register(client)
        response = await client.get(f"/tasks/{task_id}/labels", headers=stranger)
        assert response.status_code == 404
