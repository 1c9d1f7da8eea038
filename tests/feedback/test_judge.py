"""The LLM judge: a registered ``llm`` agent grades delivered answers by the buyer's rubric; its
fee is held at creation and paid for a verdict (refunded otherwise); a judge that fails, times
out or answers off-rubric leaves the label as it was and says why; its agreement with buyers is
measured."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dukenet.config import Settings
from dukenet.feedback.evaluation import judge_escrow_name
from dukenet.feedback.judge import Judge, JudgeReport, OffRubric, parse_verdict
from dukenet.kit.state import AppState
from dukenet.ledger.service import agent_name
from dukenet.runners.llm import LLMExecutor
from tests.factories import claim_and_submit, create_admin, credit, llm_agent, register, submit_task
from tests.feedback.test_labels import UNUSED_ENDPOINT, shown
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance
from tests.llm_double import LLMDouble, Reply

JUDGE_BASE_SAT = 50
COMPLEXITY = 3
FEE = round(JUDGE_BASE_SAT * COMPLEXITY * 1.2)  # a new judge's multiplier is 1.2
RUBRIC = "Pass if the answer is a correct Python function adding two numbers."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A one-hour dispute window and a short judge timeout."""
    return settings.model_copy(update={"dispute_window_s": 3_600.0, "judge_timeout_s": 1.0})


@dataclass
class JudgeMarket:
    admin: dict[str, str]
    buyer: dict[str, str]
    operator: dict[str, str]
    agent: dict[str, Any]
    judge: dict[str, Any]


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState, double: LLMDouble) -> JudgeMarket:
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], 1_000_000)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT)
    _, judge_operator = await register(client, role="agent")
    judge = await llm_agent(
        client, judge_operator, base_url=double.base_url, base_price_sat=JUDGE_BASE_SAT
    )
    return JudgeMarket(admin, buyer_headers, operator, agent, judge)


@pytest.fixture
async def judge(state: AppState) -> AsyncIterator[Judge]:
    async with httpx.AsyncClient() as http:
        yield Judge(state.sessionmaker, state.settings, LLMExecutor(http, max_retries=0))


def verdict(**body: Any) -> Reply:
    return Reply.completion(json.dumps(body))


async def judged_task(
    client: httpx.AsyncClient,
    market: JudgeMarket,
    *,
    scale: str = "pass_fail",
    success: bool = True,
    text: str = "def add(a, b): return a + b",
) -> str:
    """Create a task with a judge, deliver ``text`` as the agent; return the task id."""
    created = await submit_task(
        client,
        market.buyer,
        agent_id=market.agent["id"],
        complexity=COMPLEXITY,
        evaluator={
            "kind": "judge",
            "agent_id": market.judge["id"],
            "rubric": RUBRIC,
            "scale": scale,
        },
    )
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    submitted = await claim_and_submit(client, market.operator, task_id, text, success=success)
    assert submitted.status_code == 201, submitted.text
    return task_id


class TestVerdicts:
    async def test_a_failing_verdict_relabels_the_outcome_and_pays_the_judge(
        self,
        client: httpx.AsyncClient,
        market: JudgeMarket,
        state: AppState,
        double: LLMDouble,
        judge: Judge,
    ) -> None:
        before = await wallet_balance(client, market.buyer)
        task_id = await judged_task(client, market)
        task = (await client.get(f"/tasks/{task_id}", headers=market.buyer)).json()
        escrow = judge_escrow_name(uuid.UUID(task_id))
        assert await account_balance(state.sessionmaker, escrow) == FEE
        assert await wallet_balance(client, market.buyer) == before - task["price_sat"] - FEE
        assert (await shown(client, market.buyer, task_id))["label_source"] == "agent"

        double.script(verdict(verdict="fail", reasoning="it subtracts"))
        assert await judge.run_once() == JudgeReport(judged=1)
        assert await judge.run_once() == JudgeReport()  # judged once
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("evaluator", 0.0)
        assert body["labels"][-1]["kind"] == "judge"
        assert body["labels"][-1]["detail"]["reasoning"] == "it subtracts"
        assert body["evaluation"]["status"] == "done" and body["evaluation"]["fee_sat"] == FEE
        prompt = double.requests[0].json()["messages"][-1]["content"]
        assert RUBRIC in prompt and "def add(a, b)" in prompt
        assert await account_balance(state.sessionmaker, escrow) == 0
        judge_account = agent_name(uuid.UUID(market.judge["id"]))
        assert await account_balance(state.sessionmaker, judge_account) == FEE
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)

    async def test_a_score_maps_to_quality_and_the_buyer_still_wins(
        self,
        client: httpx.AsyncClient,
        market: JudgeMarket,
        double: LLMDouble,
        judge: Judge,
    ) -> None:
        task_id = await judged_task(client, market, scale="1-10")
        rejected = await client.post(
            f"/tasks/{task_id}/reject", headers=market.buyer, json={"reason": "not what I asked"}
        )
        assert rejected.status_code == 200
        double.script(Reply.completion('Sure! ```json\n{"score": 8, "reasoning": "ok"}\n```'))
        assert (await judge.run_once()).judged == 1
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("buyer", 0.0)
        assert body["evaluation"]["quality"] == pytest.approx(7 / 9)
        assert body["labels"][-1]["applied"] is False
        agreement = await client.get("/admin/judges/agreement", headers=market.admin)
        assert agreement.status_code == 200, agreement.text
        (row,) = agreement.json()
        assert row["agent_id"] == market.judge["id"] and row["verdicts"] == 1
        assert row["buyer"] == {"n": 1, "agreement": 0.0, "kappa": 0.0}
        assert row["curator"] == {"n": 0, "agreement": None, "kappa": None}


class TestNoVerdict:
    @pytest.mark.parametrize(
        ("reply", "reason"),
        [
            (Reply.completion("Looks fine to me."), "off-rubric"),
            (verdict(verdict="maybe"), "off-rubric"),
            (verdict(score=11), "off-rubric"),
            (Reply.error(500), "the judge failed"),
            (Reply.hanging(), "timed out"),
        ],
    )
    async def test_the_label_stays_the_fee_is_refunded_and_the_reason_kept(
        self,
        client: httpx.AsyncClient,
        market: JudgeMarket,
        state: AppState,
        double: LLMDouble,
        judge: Judge,
        reply: Reply,
        reason: str,
    ) -> None:
        before = await wallet_balance(client, market.buyer)
        scale = "1-10" if "score" in reply.body.decode() else "pass_fail"
        task_id = await judged_task(client, market, scale=scale)
        price = (await client.get(f"/tasks/{task_id}", headers=market.buyer)).json()["price_sat"]
        double.script(reply)
        assert await judge.run_once() == JudgeReport(failed=1)
        body = await shown(client, market.buyer, task_id)
        assert (body["label_source"], body["quality"]) == ("agent", 1.0)
        assert body["evaluation"]["status"] == "failed"
        assert reason in body["evaluation"]["error"]
        assert await wallet_balance(client, market.buyer) == before - price  # fee back
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)
        row = (await client.get("/admin/judges/agreement", headers=market.admin)).json()[0]
        assert row["failures"] == 1 and reason in row["failure_reasons"][0]

    async def test_a_task_that_delivered_nothing_is_not_judged(
        self,
        client: httpx.AsyncClient,
        market: JudgeMarket,
        double: LLMDouble,
        judge: Judge,
    ) -> None:
        before = await wallet_balance(client, market.buyer)
        task_id = await judged_task(client, market, success=False)
        assert await judge.run_once() == JudgeReport(dropped=1)
        assert double.requests == []
        assert await wallet_balance(client, market.buyer) == before  # task and fee refunded
        body = await shown(client, market.buyer, task_id)
        assert body["evaluation"]["error"] == "the task delivered no answer"


class TestJudgeChoice:
    async def test_a_judge_must_be_an_enabled_llm_agent_the_buyer_can_pay(
        self, client: httpx.AsyncClient, market: JudgeMarket, state: AppState
    ) -> None:
        def body(agent_id: str) -> dict[str, Any]:
            return {"kind": "judge", "agent_id": agent_id, "rubric": RUBRIC}

        unknown = await submit_task(client, market.buyer, evaluator=body(str(uuid.uuid4())))
        assert unknown.status_code == 404 and "judge agent" in unknown.text
        disabled = await client.post(
            f"/agents/{market.agent['id']}/disable", headers=market.operator
        )
        assert disabled.status_code == 200
        response = await submit_task(
            client, market.buyer, agent_id=market.judge["id"], evaluator=body(market.agent["id"])
        )
        assert response.status_code == 404
        poor, poor_headers = await register(client)
        await credit(client, market.admin, poor["id"], FEE)  # the task's price, not the fee too
        response = await submit_task(
            client,
            poor_headers,
            agent_id=market.judge["id"],
            complexity=COMPLEXITY,
            evaluator=body(market.judge["id"]),
        )
        assert response.status_code == 402, response.text
        assert await wallet_balance(client, poor_headers) == FEE
        tasks = await client.get("/tasks", headers=poor_headers)
        assert tasks.json()["total"] == 0
        await assert_ledger_balanced(client, market.admin, state.sessionmaker)


class TestParseVerdict:
    def test_pass_fail_and_scores(self) -> None:
        assert parse_verdict("pass_fail", '{"verdict": "PASS", "reasoning": "r"}') == (
            1.0,
            {"verdict": "pass", "reasoning": "r"},
        )
        assert parse_verdict("1-10", '{"score": 1}')[0] == 0.0
        assert parse_verdict("1-10", '{"score": 10.0}')[0] == 1.0
        for bad in ('{"score": 5.5}', '{"score": true}', '["score", 5]', '{"score": "7"}'):
            with pytest.raises(OffRubric):
                parse_verdict("1-10", bad)
