"""Payouts through the API with the default ledger-only provider: balances, requests,
approvals, rejections, idempotency, refusals; every step keeps the ledger balanced."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.kit.state import AppState
from dukenet.payments.providers import EXTERNAL_PAYOUTS
from tests.factories import register
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance
from tests.payments import Market, agent_balance, earn, market, request_payout

PRICE = 1_200  # a new agent's multiplier is 1.2: a complexity-1 task pays 1,440 sat


@pytest.fixture
async def paid(client: httpx.AsyncClient, state: AppState) -> Market:
    """A market whose agent has earned from two tasks."""
    result = await market(client, state, base_price_sat=PRICE)
    assert await earn(client, result, tasks=2) == 2 * 1_440
    return result


class TestBalances:
    async def test_an_operator_sees_each_agents_earnings_and_the_total(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        second = await client.post(
            "/agents",
            headers=paid.operator,
            json={"name": f"idle-{uuid.uuid4().hex[:6]}", "kind": "human"},
        )
        assert second.status_code == 201
        body = (await client.get("/payouts/balances", headers=paid.operator)).json()
        by_id = {a["agent_id"]: a for a in body["agents"]}
        assert by_id[paid.agent_id]["balance_sat"] == 2_880
        assert by_id[second.json()["id"]]["balance_sat"] == 0
        assert body["total_sat"] == 2_880 and body["pending_sat"] == 0

    async def test_buyers_and_api_keys_cannot_see_or_move_earnings(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        assert (await client.get("/payouts/balances", headers=paid.buyer)).status_code == 403
        key = await client.post("/api-keys", headers=paid.operator, json={"name": "runner"})
        assert key.status_code == 201, key.text
        with_key = {"X-API-Key": key.json()["key"]}
        refused = await client.post("/payouts", headers=with_key, json={"agent_id": paid.agent_id})
        assert refused.status_code == 401
        assert "API keys are not accepted" in refused.json()["detail"]


class TestWalletPayout:
    async def test_request_holds_then_approve_pays_the_operators_wallet(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        response = await request_payout(client, paid, amount_sat=1_000)
        assert response.status_code == 201, response.text
        payout = response.json()
        assert payout["status"] == "requested" and payout["amount_sat"] == 1_000
        assert await agent_balance(client, paid) == 1_880
        balances = (await client.get("/payouts/balances", headers=paid.operator)).json()
        assert balances["pending_sat"] == 1_000
        assert await account_balance(sessionmaker, f"payout:{payout['id']}") == 1_000

        listed = await client.get("/admin/payouts?status=requested", headers=paid.admin)
        assert [p["id"] for p in listed.json()["items"]] == [payout["id"]]
        approved = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "paid"
        assert await wallet_balance(client, paid.operator) == 1_000
        assert await agent_balance(client, paid) == 1_880
        assert await account_balance(sessionmaker, f"payout:{payout['id']}") == 0
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_amount_omitted_pays_out_the_whole_balance(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        response = await request_payout(client, paid)
        assert response.status_code == 201, response.text
        assert response.json()["amount_sat"] == 2_880
        assert await agent_balance(client, paid) == 0
        again = await request_payout(client, paid)
        assert again.status_code == 409
        assert "no earnings" in again.json()["detail"]

    async def test_approving_twice_pays_once(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        payout = (await request_payout(client, paid, amount_sat=500)).json()
        for _ in range(2):
            approved = await client.post(
                f"/admin/payouts/{payout['id']}/approve", headers=paid.admin
            )
            assert approved.status_code == 200
            assert approved.json()["status"] == "paid"
        assert await wallet_balance(client, paid.operator) == 500
        await assert_ledger_balanced(client, paid.admin, sessionmaker)


class TestRefusals:
    async def test_more_than_the_balance_is_a_conflict_and_holds_nothing(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        response = await request_payout(client, paid, amount_sat=2_881)
        assert response.status_code == 409
        assert "2880 sat to pay out; 2881 sat were requested" in response.json()["detail"]
        assert await agent_balance(client, paid) == 2_880

    async def test_another_operators_agent_is_not_found(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        _, rival = await register(client, role="agent")
        response = await client.post(
            "/payouts", headers=rival, json={"agent_id": paid.agent_id, "amount_sat": 1}
        )
        assert response.status_code == 404
        mine = (await request_payout(client, paid, amount_sat=1)).json()
        assert (await client.get(f"/payouts/{mine['id']}", headers=rival)).status_code == 404
        assert (await client.get("/payouts", headers=rival)).json()["total"] == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"amount_sat": 0}, "amount_sat"),
            ({"amount_sat": -5}, "amount_sat"),
            ({"destination": "external"}, "destination_ref"),
            ({"destination_ref": "lnbc1..."}, "destination_ref"),
            ({"destination": "moon", "destination_ref": "x"}, "destination"),
            ({"destination": "external", "destination_ref": "a b"}, "destination_ref"),
        ],
    )
    async def test_malformed_requests_name_the_field(
        self, client: httpx.AsyncClient, paid: Market, body: dict[str, object], field: str
    ) -> None:
        response = await request_payout(client, paid, **body)
        assert response.status_code == 422, response.text
        assert field in response.text

    async def test_a_rejected_payout_returns_the_money_and_cannot_be_approved(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        payout = (await request_payout(client, paid, amount_sat=800)).json()
        for _ in range(2):
            rejected = await client.post(
                f"/admin/payouts/{payout['id']}/reject",
                headers=paid.admin,
                json={"reason": "verify your identity first"},
            )
            assert rejected.status_code == 200
            assert rejected.json()["status"] == "rejected"
        assert rejected.json()["reason"] == "verify your identity first"
        assert await agent_balance(client, paid) == 2_880
        approved = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert approved.status_code == 409
        assert "rejected" in approved.json()["detail"]
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_a_paid_payout_cannot_be_rejected(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        payout = (await request_payout(client, paid, amount_sat=800)).json()
        await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        rejected = await client.post(
            f"/admin/payouts/{payout['id']}/reject", headers=paid.admin, json={"reason": "late"}
        )
        assert rejected.status_code == 409
        assert await wallet_balance(client, paid.operator) == 800

    async def test_only_admins_decide(self, client: httpx.AsyncClient, paid: Market) -> None:
        payout = (await request_payout(client, paid, amount_sat=100)).json()
        response = await client.post(
            f"/admin/payouts/{payout['id']}/approve", headers=paid.operator
        )
        assert response.status_code == 403
        unknown = await client.post(f"/admin/payouts/{uuid.uuid4()}/approve", headers=paid.admin)
        assert unknown.status_code == 404


class TestIdempotency:
    async def test_a_double_submit_holds_once(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        first = await request_payout(client, paid, amount_sat=700, idempotency_key="k-1")
        second = await request_payout(client, paid, amount_sat=700, idempotency_key="k-1")
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["id"] == second.json()["id"]
        assert await agent_balance(client, paid) == 2_180


class TestExternalLedgerOnly:
    async def test_an_external_payout_is_booked_to_external_payouts(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        before = await account_balance(sessionmaker, EXTERNAL_PAYOUTS)
        payout = (
            await request_payout(
                client,
                paid,
                amount_sat=2_000,
                destination="external",
                destination_ref="iban:DE89370400440532013000",
            )
        ).json()
        assert payout["provider"] == "ledger"
        approved = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert approved.json()["status"] == "paid"
        assert await account_balance(sessionmaker, EXTERNAL_PAYOUTS) == before + 2_000
        assert await wallet_balance(client, paid.operator) == 0
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_deposits_are_an_admins_credit_with_the_ledger_provider(
        self, client: httpx.AsyncClient, paid: Market
    ) -> None:
        response = await client.post("/deposits", headers=paid.buyer, json={"amount_sat": 1_000})
        assert response.status_code == 409
        assert "credited by an admin" in response.json()["detail"]
