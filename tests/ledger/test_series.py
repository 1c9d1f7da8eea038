"""The caller's money over time (``GET /ledger/series``): deposits, spending and refunds of a
buyer's wallet, earnings and payouts of an operator's agents, summed by hour, day or week from
real ledger entries (tasks run, cancelled, paid; a payout held and returned)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from dukenet.kit.state import AppState
from dukenet.ledger.models import LedgerEntry, LedgerTransaction, LedgerTransactionKind
from tests.factories import register, submit_task
from tests.payments import BUYER_DEPOSIT, earn, market, request_payout

PRICE = 700  # the human agent's base price (sat)


async def series(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    """GET the caller's money series; assert it answered 200."""
    response = await client.get("/ledger/series", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def task_prices(client: httpx.AsyncClient, buyer: dict[str, str]) -> list[int]:
    """Return the prices (sat) of the buyer's tasks, newest first."""
    response = await client.get("/tasks", headers=buyer, params={"limit": 100})
    return [t["price_sat"] for t in response.json()["items"]]


def totals(body: dict[str, Any]) -> dict[str, int]:
    """Return each field summed over every bucket."""
    fields = ("deposited_sat", "spent_sat", "refunded_sat", "earned_sat", "paid_out_sat")
    return {f: sum(p[f] for p in body["points"]) for f in fields}


async def backdate(state: AppState, kind: LedgerTransactionKind, to: datetime) -> None:
    """Move the entries of every ``kind`` transaction to ``to`` (as if written then)."""
    async with state.sessionmaker() as session:
        ids = select(LedgerTransaction.id).where(LedgerTransaction.kind == kind)
        await session.execute(
            update(LedgerEntry).where(LedgerEntry.transaction_id.in_(ids)).values(created_at=to)
        )
        await session.commit()


class TestBuyer:
    async def test_deposits_spending_and_refunds_by_day(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        await earn(client, world, tasks=2)
        queued = await submit_task(client, world.buyer, agent_id=world.agent_id, complexity=1)
        cancelled = await client.post(f"/tasks/{queued.json()['id']}/cancel", headers=world.buyer)
        assert cancelled.status_code == 200, cancelled.text

        prices = await task_prices(client, world.buyer)
        body = await series(client, world.buyer)
        assert body["bucket"] == "day" and body["bucket_s"] == 86_400
        assert len(body["points"]) == 30
        starts = [datetime.fromisoformat(p["start"]) for p in body["points"]]
        assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(starts))
        assert starts[0] == datetime.fromisoformat(body["since"])
        assert starts[-1] <= datetime.now(UTC) < datetime.fromisoformat(body["until"])
        today = body["points"][-1]
        assert today["deposited_sat"] == BUYER_DEPOSIT
        assert today["spent_sat"] == sum(prices)
        assert today["refunded_sat"] == prices[0]  # the cancelled task's price came back
        assert today["earned_sat"] == 0 and today["paid_out_sat"] == 0
        assert totals(body) == {k: v for k, v in today.items() if k != "start"}
        # what left the wallet for good is what the wallet lost
        me = (await client.get("/users/me", headers=world.buyer)).json()
        t = totals(body)
        assert t["deposited_sat"] - t["spent_sat"] + t["refunded_sat"] == me["balance_sat"]

    async def test_older_entries_fall_in_their_own_bucket(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        await earn(client, world, tasks=1)
        three_days_ago = datetime.now(UTC) - timedelta(days=3)
        await backdate(state, LedgerTransactionKind.DEPOSIT, three_days_ago)

        by_day = await series(client, world.buyer, days=7)
        assert len(by_day["points"]) == 7
        assert [p["deposited_sat"] for p in by_day["points"]] == [0, 0, 0, BUYER_DEPOSIT, 0, 0, 0]
        assert by_day["points"][-1]["spent_sat"] == sum(await task_prices(client, world.buyer))

        by_hour = await series(client, world.buyer, bucket="hour", days=4)
        assert len(by_hour["points"]) == 96 and by_hour["bucket_s"] == 3600
        hit = [p for p in by_hour["points"] if p["deposited_sat"]]
        assert len(hit) == 1
        start = datetime.fromisoformat(hit[0]["start"])
        assert start <= three_days_ago < start + timedelta(hours=1)

        by_week = await series(client, world.buyer, bucket="week", days=14)
        assert all(datetime.fromisoformat(p["start"]).weekday() == 0 for p in by_week["points"])
        assert totals(by_week)["deposited_sat"] == BUYER_DEPOSIT

        outside = await series(client, world.buyer, days=1)
        assert totals(outside)["deposited_sat"] == 0


class TestOperator:
    async def test_earnings_and_a_payout_that_came_back(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        balance = await earn(client, world, tasks=3)
        payout = await request_payout(client, world, amount_sat=balance)
        assert payout.status_code == 201, payout.text

        held = (await series(client, world.operator))["points"][-1]
        assert held["earned_sat"] == balance
        assert held["paid_out_sat"] == balance
        assert held["spent_sat"] == 0 and held["deposited_sat"] == 0

        rejected = await client.post(
            f"/admin/payouts/{payout.json()['id']}/reject",
            headers=world.admin,
            json={"reason": "wrong address"},
        )
        assert rejected.status_code == 200, rejected.text
        back = (await series(client, world.operator))["points"][-1]
        assert back["earned_sat"] == balance and back["paid_out_sat"] == 0

        one = await series(client, world.operator, agent_id=world.agent_id)
        assert one["agent_id"] == world.agent_id
        assert totals(one)["earned_sat"] == balance
        as_admin = await series(client, world.admin, agent_id=world.agent_id)
        assert totals(as_admin)["earned_sat"] == balance

    async def test_another_operators_agent_does_not_exist_for_the_caller(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        _, other = await register(client, role="agent")
        for headers, agent_id in (
            (other, world.agent_id),
            (world.buyer, world.agent_id),
            (world.operator, str(uuid.uuid4())),
        ):
            response = await client.get(
                "/ledger/series", headers=headers, params={"agent_id": agent_id}
            )
            assert response.status_code == 404, response.text
        assert (await client.get("/ledger/series")).status_code == 401


class TestValidation:
    async def test_windows_out_of_range_are_422_naming_days(
        self, client: httpx.AsyncClient
    ) -> None:
        _, buyer = await register(client)
        windows: list[dict[str, str | int]] = [
            {"days": 0},
            {"days": 367},
            {"bucket": "hour", "days": 32},
        ]
        for params in windows:
            response = await client.get("/ledger/series", headers=buyer, params=params)
            assert response.status_code == 422, params
            assert "days" in response.text
        bad = await client.get("/ledger/series", headers=buyer, params={"bucket": "month"})
        assert bad.status_code == 422 and "bucket" in bad.text
