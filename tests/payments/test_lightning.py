"""Deposits and payouts with the Lightning provider, against a loopback LNbits-style wallet
(``tests.lightning_double``): invoices credited once when paid, payouts to invoices paid once,
failed payments returned by a reversing transaction, pending ones resumed, refusals."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.kit.state import AppState
from dukenet.ledger.models import LedgerTransaction, LedgerTransactionKind
from dukenet.payments.providers import EXTERNAL_LIGHTNING
from tests.factories import register
from tests.ledger import account_balance, assert_ledger_balanced, wallet_balance
from tests.lightning_double import PAYMENTS, LightningDouble
from tests.payments import Market, agent_balance, earn, market, request_payout


@pytest.fixture
def provider_name() -> str:
    """These tests run the app with ``DUKENET_PAYMENT_PROVIDER=lightning``."""
    return "lightning"


@pytest.fixture
async def paid(client: httpx.AsyncClient, state: AppState) -> Market:
    """A market whose agent has earned 2 x 1,440 sat."""
    result = await market(client, state, base_price_sat=1_200)
    assert await earn(client, result, tasks=2) == 2_880
    return result


class TestDeposits:
    async def test_an_invoice_paid_outside_credits_the_wallet_once(
        self,
        client: httpx.AsyncClient,
        lightning: LightningDouble,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        _, buyer = await register(client)
        created = await client.post(
            "/deposits", headers=buyer, json={"amount_sat": 25_000, "idempotency_key": "d1"}
        )
        assert created.status_code == 201, created.text
        deposit = created.json()
        assert deposit["status"] == "pending"
        assert deposit["payment_request"].startswith("lnbcrt25000n1p")
        assert ("POST", PAYMENTS, {"out": False, "amount": 25_000, "unit": "sat",
                "memo": "DukeNET deposit"}) in lightning.requests  # fmt: skip
        again = await client.post(
            "/deposits", headers=buyer, json={"amount_sat": 25_000, "idempotency_key": "d1"}
        )
        assert again.status_code == 200 and again.json()["id"] == deposit["id"]

        pending = await client.get(f"/deposits/{deposit['id']}", headers=buyer)
        assert pending.json()["status"] == "pending"
        assert await wallet_balance(client, buyer) == 0

        lightning.settle_incoming(deposit["payment_hash"])
        for _ in range(2):
            shown = await client.get(f"/deposits/{deposit['id']}", headers=buyer)
            assert shown.status_code == 200
            assert shown.json()["status"] == "credited"
        assert await wallet_balance(client, buyer) == 25_000
        assert await account_balance(sessionmaker, EXTERNAL_LIGHTNING) == -25_000
        listed = await client.get("/deposits", headers=buyer)
        assert [d["id"] for d in listed.json()["items"]] == [deposit["id"]]

    async def test_an_expired_invoice_credits_nothing(
        self, client: httpx.AsyncClient, lightning: LightningDouble
    ) -> None:
        _, buyer = await register(client)
        deposit = (await client.post("/deposits", headers=buyer, json={"amount_sat": 10})).json()
        lightning.expire_incoming(deposit["payment_hash"])
        shown = await client.get(f"/deposits/{deposit['id']}", headers=buyer)
        assert shown.json()["status"] == "expired"
        assert await wallet_balance(client, buyer) == 0

    async def test_someone_elses_deposit_is_not_found(self, client: httpx.AsyncClient) -> None:
        _, buyer = await register(client)
        _, other = await register(client)
        deposit = (await client.post("/deposits", headers=buyer, json={"amount_sat": 10})).json()
        assert (await client.get(f"/deposits/{deposit['id']}", headers=other)).status_code == 404

    async def test_a_wallet_that_fails_is_a_502_and_creates_nothing(
        self, client: httpx.AsyncClient, lightning: LightningDouble
    ) -> None:
        _, buyer = await register(client)
        lightning.script(500)
        response = await client.post("/deposits", headers=buyer, json={"amount_sat": 10})
        assert response.status_code == 502
        assert "Lightning wallet refused the invoice (500)" in response.json()["detail"]
        assert (await client.get("/deposits", headers=buyer)).json()["total"] == 0


class TestPayouts:
    async def test_a_payout_to_an_invoice_is_paid_once(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        lightning: LightningDouble,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        invoice = lightning.outside_invoice(2_000)
        response = await request_payout(
            client, paid, destination="external", destination_ref=invoice
        )
        assert response.status_code == 201, response.text
        payout = response.json()
        assert payout["amount_sat"] == 2_000  # the invoice's amount
        assert payout["payment_hash"] == lightning.payment_hash(invoice)
        assert not lightning.is_paid(payout["payment_hash"])
        for _ in range(2):
            approved = await client.post(
                f"/admin/payouts/{payout['id']}/approve", headers=paid.admin
            )
            assert approved.status_code == 200, approved.text
            assert approved.json()["status"] == "paid"
        assert lightning.is_paid(payout["payment_hash"])
        assert lightning.pay_calls(payout["payment_hash"]) == 1
        assert await agent_balance(client, paid) == 880
        assert await account_balance(sessionmaker, EXTERNAL_LIGHTNING) == 2_000
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_a_failed_payment_returns_the_funds_by_a_reversing_transaction(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        lightning: LightningDouble,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        invoice = lightning.outside_invoice(1_500, outcome="fail")
        payout = (
            await request_payout(client, paid, destination="external", destination_ref=invoice)
        ).json()
        assert await agent_balance(client, paid) == 1_380
        approved = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert approved.status_code == 200
        assert approved.json()["status"] == "failed"
        assert "no route found" in approved.json()["reason"]
        assert await agent_balance(client, paid) == 2_880
        async with sessionmaker() as session:
            kinds = (
                await session.execute(
                    select(LedgerTransaction.kind).where(
                        LedgerTransaction.idempotency_key.like(f"payout:{payout['id']}:%")
                    )
                )
            ).scalars()
            assert sorted(kinds) == [
                LedgerTransactionKind.PAYOUT_HOLD,
                LedgerTransactionKind.PAYOUT_RETURN,
            ]
        again = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert again.status_code == 409
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_a_pending_payment_stays_sending_until_the_wallet_settles_it(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        lightning: LightningDouble,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        invoice = lightning.outside_invoice(1_000, outcome="pending")
        payout = (
            await request_payout(client, paid, destination="external", destination_ref=invoice)
        ).json()
        url = f"/admin/payouts/{payout['id']}/approve"
        assert (await client.post(url, headers=paid.admin)).json()["status"] == "sending"
        rejected = await client.post(
            f"/admin/payouts/{payout['id']}/reject", headers=paid.admin, json={"reason": "x"}
        )
        assert rejected.status_code == 409
        assert (await client.post(url, headers=paid.admin)).json()["status"] == "sending"
        lightning.resolve_outgoing(payout["payment_hash"], success=True)
        assert (await client.post(url, headers=paid.admin)).json()["status"] == "paid"
        assert lightning.pay_calls(payout["payment_hash"]) == 1
        assert await agent_balance(client, paid) == 1_880
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_an_unanswered_payment_is_never_guessed_failed(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        lightning: LightningDouble,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        invoice = lightning.outside_invoice(1_000)
        payout = (
            await request_payout(client, paid, destination="external", destination_ref=invoice)
        ).json()
        url = f"/admin/payouts/{payout['id']}/approve"
        lightning.script(404, 503)  # status check: unknown; the pay call: 503
        first = await client.post(url, headers=paid.admin)
        assert first.json()["status"] == "sending"
        assert "503" in first.json()["reason"]
        assert await agent_balance(client, paid) == 1_880  # still held, not returned
        second = await client.post(url, headers=paid.admin)
        assert second.json()["status"] == "paid"
        await assert_ledger_balanced(client, paid.admin, sessionmaker)

    async def test_the_same_invoice_cannot_be_paid_out_twice(
        self, client: httpx.AsyncClient, paid: Market, lightning: LightningDouble
    ) -> None:
        invoice = lightning.outside_invoice(100)
        body = {"destination": "external", "destination_ref": invoice}
        assert (await request_payout(client, paid, **body)).status_code == 201
        second = await request_payout(client, paid, **body)
        assert second.status_code == 409
        assert "already paid or being paid" in second.json()["detail"]

    @pytest.mark.parametrize(
        ("amount", "ref", "message"),
        [
            (999, None, "amount_sat: 999 sat differs from the invoice's 1000 sat"),
            (None, "lnbc-not-an-invoice", "not a Lightning invoice"),
        ],
    )
    async def test_an_unpayable_destination_is_a_400(
        self,
        client: httpx.AsyncClient,
        paid: Market,
        lightning: LightningDouble,
        amount: int | None,
        ref: str | None,
        message: str,
    ) -> None:
        body = {
            "destination": "external",
            "destination_ref": ref or lightning.outside_invoice(1_000),
        }
        if amount is not None:
            body["amount_sat"] = amount
        response = await request_payout(client, paid, **body)
        assert response.status_code == 400, response.text
        assert message in response.json()["detail"]
        assert await agent_balance(client, paid) == 2_880

    async def test_an_invoice_above_the_balance_is_a_conflict(
        self, client: httpx.AsyncClient, paid: Market, lightning: LightningDouble
    ) -> None:
        response = await request_payout(
            client,
            paid,
            destination="external",
            destination_ref=lightning.outside_invoice(2_881),
        )
        assert response.status_code == 409

    async def test_a_wallet_payout_needs_no_lightning_call(
        self, client: httpx.AsyncClient, paid: Market, lightning: LightningDouble
    ) -> None:
        before = len(lightning.requests)
        payout = (await request_payout(client, paid, amount_sat=100)).json()
        approved = await client.post(f"/admin/payouts/{payout['id']}/approve", headers=paid.admin)
        assert approved.json()["status"] == "paid"
        assert len(lightning.requests) == before
        assert await wallet_balance(client, paid.operator) == 100
