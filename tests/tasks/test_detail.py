"""A task's detail: what ``POST /tasks`` answers (built from what the submission wrote) is what
``GET /tasks/{id}`` reads back, before and after the task is settled."""

from __future__ import annotations

import httpx

from dukenet.kit.state import AppState
from dukenet.ledger.service import escrow_name, wallet_name
from tests.factories import create_admin, credit, llm_agent, register, submit_task

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


class TestDetail:
    async def test_the_submission_answer_is_what_a_read_returns(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10_000)
        _, operator = await register(client, role="agent")
        await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)

        created = await submit_task(client, headers)
        assert created.status_code == 201, created.text
        read = await client.get(f"/tasks/{created.json()['id']}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json() == created.json()
        (hold,) = created.json()["transactions"]
        price = created.json()["escrow_sat"]
        assert hold["kind"] == "escrow_hold"
        assert hold["entries"] == [
            {"account_name": wallet_name(buyer["id"]), "amount_sat": -price},
            {"account_name": escrow_name(created.json()["id"]), "amount_sat": price},
        ]
        assert created.json()["result"] is None and created.json()["file_ids"] == []

    async def test_a_repeated_submission_reads_the_first_task_back(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10_000)
        _, operator = await register(client, role="agent")
        await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)

        first = await submit_task(client, headers, idempotency_key="once")
        again = await submit_task(client, headers, idempotency_key="once")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
