"""Pairwise comparisons: a second agent answers the same task, the buyer (or a curator) picks
one; the pick labels the winner, pays per the payment mode in one balanced transaction, and
yields a DPO pair and a router label; a side that fails voids the comparison and is refunded;
the share of drawn comparisons records its probability."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dukenet.accounts import repository as accounts_repository
from dukenet.cli import app as cli_app
from dukenet.comparisons import service as comparisons_service
from dukenet.comparisons.models import Comparison
from dukenet.comparisons.schemas import PickRequest
from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.ledger import service as ledger_service
from dukenet.tasks import service as tasks_service
from tests.factories import claim_and_submit, create_admin, credit, llm_agent, register, submit_task

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"  # the agents here are run over the runner protocol
START_SAT = 1_000_000


@dataclass
class Market:
    admin: dict[str, str]
    buyer: dict[str, str]
    buyer_id: str
    operator: dict[str, str]
    agents: list[dict[str, Any]]


@pytest.fixture
async def market(client: httpx.AsyncClient, state: AppState) -> Market:
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], START_SAT)
    _, operator = await register(client, role="agent")
    agents = [
        await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=price)
        for price in (1_000, 2_000)
    ]
    return Market(admin, buyer_headers, buyer["id"], operator, agents)


async def compared_task(
    client: httpx.AsyncClient, market: Market, *, payment: str = "winner", **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a task asking for a comparison; return (task detail, comparison)."""
    created = await submit_task(
        client, market.buyer, compare=True, compare_payment=payment, **fields
    )
    assert created.status_code == 201, created.text
    task = created.json()
    comparison_id = task["routing"]["comparison"]["comparison_id"]
    return task, await comparison(client, market.buyer, comparison_id)


async def comparison(
    client: httpx.AsyncClient, headers: dict[str, str], comparison_id: str
) -> dict[str, Any]:
    response = await client.get(f"/comparisons/{comparison_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def task_of(client: httpx.AsyncClient, market: Market, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", headers=market.buyer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def answer(
    client: httpx.AsyncClient, market: Market, task_id: str, text: str, *, success: bool = True
) -> None:
    """Claim the task as its agent's operator and submit ``text``."""
    submitted = await claim_and_submit(client, market.operator, task_id, text, success=success)
    assert submitted.status_code == 201, submitted.text


async def pick(
    client: httpx.AsyncClient, headers: dict[str, str], comparison_id: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/comparisons/{comparison_id}/pick", headers=headers, json=body)


async def balance(client: httpx.AsyncClient, market: Market) -> int:
    profile = (await client.get("/users/me", headers=market.buyer)).json()
    return int(profile["balance_sat"])


async def earnings(state: AppState, agent_id: str) -> int:
    async with state.sessionmaker() as session:
        return await ledger_service.balance(session, ledger_service.agent_name(uuid.UUID(agent_id)))


async def ledger_ok(client: httpx.AsyncClient, market: Market) -> None:
    check = (await client.get("/admin/ledger/check", headers=market.admin)).json()
    assert check["ok"] is True and check["total_sat"] == 0, check


def settlement_of(task: dict[str, Any]) -> dict[str, Any]:
    """Return the one transaction of the task's detail (``GET /tasks/{id}``) that settles its
    escrow, as {id, kind, legs: {account: sat}}; assert every transaction the task lists moves
    only its own escrow's money (no other task's escrow in it)."""
    own = f"escrow:{task['id']}"
    for transaction in task["transactions"]:
        assert transaction["task_id"] == task["id"]
        escrows = {e["account_name"] for e in transaction["entries"]} - {own}
        assert not any(name.startswith("escrow:") for name in escrows), transaction
    settles = [t for t in task["transactions"] if t["kind"] != "escrow_hold"]
    assert len(settles) == 1, settles
    (settle,) = settles
    legs = {e["account_name"]: e["amount_sat"] for e in settle["entries"]}
    assert sum(legs.values()) == 0
    return {"id": settle["id"], "kind": settle["kind"], "legs": legs}


async def labels_of(client: httpx.AsyncClient, market: Market, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}/labels", headers=market.buyer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def both_answered(
    client: httpx.AsyncClient, market: Market, *, payment: str = "winner"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A compared task whose two answers are delivered; return (first, second, comparison)."""
    first, comp = await compared_task(client, market, payment=payment)
    await answer(client, market, comp["task_id"], "def add(a, b): return a - b")
    await answer(client, market, comp["sibling_task_id"], "def add(a, b): return a + b")
    second = await task_of(client, market, comp["sibling_task_id"])
    return await task_of(client, market, first["id"]), second, comp


class TestOpening:
    async def test_the_second_agent_is_dukes_choice_among_the_others_with_its_propensity(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, comp = await compared_task(client, market)
        second = await task_of(client, market, comp["sibling_task_id"])
        assert comp["task_id"] == first["id"] and comp["status"] == "open"
        assert comp["origin"] == "buyer" and comp["probability"] == 1.0
        assert {first["agent_id"], second["agent_id"]} == {a["id"] for a in market.agents}
        assert second["routing"]["constraints"]["exclude_agent_ids"] == [first["agent_id"]]
        assert second["propensity"] == 1.0  # one agent was left to choose from
        assert second["routing"]["comparison"]["second_answer_of"] == first["id"]
        assert first["routing"]["comparison"]["requested"] is True
        # each side holds its own price in escrow
        assert await balance(client, market) == (
            START_SAT - first["escrow_sat"] - second["escrow_sat"]
        )

    async def test_a_buyer_compares_an_existing_task_with_a_named_agent_once(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        created = await submit_task(client, market.buyer, agent_id=market.agents[0]["id"])
        task_id = created.json()["id"]
        url = f"/tasks/{task_id}/compare"
        same = await client.post(
            url, headers=market.buyer, json={"agent_id": market.agents[0]["id"]}
        )
        assert same.status_code == 400 and "agent_id" in same.json()["detail"]
        response = await client.post(
            url, headers=market.buyer, json={"agent_id": market.agents[1]["id"], "payment": "both"}
        )
        assert response.status_code == 201, response.text
        comp = response.json()
        assert comp["payment"] == "both"
        second = await task_of(client, market, comp["sibling_task_id"])
        assert second["agent_id"] == market.agents[1]["id"]
        again = await client.post(url, headers=market.buyer, json={})
        assert again.status_code == 200 and again.json()["id"] == comp["id"]
        on_second = await client.post(
            f"/tasks/{comp['sibling_task_id']}/compare", headers=market.buyer, json={}
        )
        assert on_second.status_code == 409

    async def test_a_delivered_task_compared_afterwards_waits_for_the_pick(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        created = await submit_task(client, market.buyer, agent_id=market.agents[0]["id"])
        first_id = created.json()["id"]
        await answer(client, market, first_id, "first")
        assert (await task_of(client, market, first_id))["accept_by"] is not None
        response = await client.post(f"/tasks/{first_id}/compare", headers=market.buyer, json={})
        assert response.status_code == 201, response.text
        comp = response.json()
        assert comp["payment"] == "winner" and comp["pick_by"] is None
        assert (await task_of(client, market, first_id))["accept_by"] is None
        refused = await client.post(f"/tasks/{first_id}/accept", headers=market.buyer)
        assert refused.status_code == 409
        await answer(client, market, comp["sibling_task_id"], "second")
        assert (await comparison(client, market.buyer, comp["id"]))["pick_by"] is not None
        second = await task_of(client, market, comp["sibling_task_id"])
        response = await pick(client, market.buyer, comp["id"], winner_task_id=first_id)
        assert response.status_code == 200, response.text
        first = await task_of(client, market, first_id)
        assert await balance(client, market) == START_SAT - first["price_sat"]
        assert (await task_of(client, market, second["id"]))["status"] == "rejected"
        await ledger_ok(client, market)

    async def test_another_buyers_task_cannot_be_compared(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        created = await submit_task(client, market.buyer)
        _, stranger = await register(client)
        response = await client.post(
            f"/tasks/{created.json()['id']}/compare", headers=stranger, json={}
        )
        assert response.status_code == 404

    async def test_a_comparison_the_balance_cannot_cover_creates_nothing(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        buyer, headers = await register(client)
        await credit(client, market.admin, buyer["id"], 3_000)  # one agent's price, not two
        poor = Market(market.admin, headers, buyer["id"], market.operator, market.agents)
        created = await submit_task(client, headers, compare=True, complexity=1)
        assert created.status_code == 402, created.text
        assert await balance(client, poor) == 3_000
        tasks = (await client.get("/tasks", headers=headers)).json()
        assert tasks["total"] == 0


class TestWinnerMode:
    async def test_the_pick_pays_the_winner_and_refunds_the_loser_each_on_its_own_task(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        first, second, comp = await both_answered(client, market)
        assert first["status"] == second["status"] == "delivered"
        assert first["accept_by"] is None and second["accept_by"] is None  # waiting for a pick
        comp = await comparison(client, market.buyer, comp["id"])
        assert comp["pick_by"] is not None
        refused = await client.post(f"/tasks/{first['id']}/accept", headers=market.buyer)
        assert refused.status_code == 409 and "pick" in refused.json()["detail"]

        response = await pick(
            client, market.buyer, comp["id"], winner_task_id=second["id"], reason="correct"
        )
        assert response.status_code == 200, response.text
        picked = response.json()
        assert picked["status"] == "picked" and picked["winner_task_id"] == second["id"]
        assert picked["pick_source"] == "buyer" and picked["reason"] == "correct"

        assert await balance(client, market) == START_SAT - second["price_sat"]
        assert await earnings(state, second["agent_id"]) == second["price_sat"]
        assert await earnings(state, first["agent_id"]) == 0
        winner = await task_of(client, market, second["id"])
        loser = await task_of(client, market, first["id"])
        assert winner["status"] == "completed" and loser["status"] == "rejected"
        payment = settlement_of(winner)
        assert payment["id"] == picked["settlement_transaction_id"]
        assert payment == {
            "id": payment["id"],
            "kind": "escrow_release",
            "legs": {
                f"escrow:{second['id']}": -second["escrow_sat"],
                f"agent:{second['agent_id']}": second["price_sat"],
            },
        }
        refund = settlement_of(loser)
        assert refund == {
            "id": refund["id"],
            "kind": "escrow_refund",
            "legs": {
                f"escrow:{first['id']}": -first["escrow_sat"],
                f"wallet:{market.buyer_id}": first["escrow_sat"],
            },
        }
        await ledger_ok(client, market)

        won = await labels_of(client, market, second["id"])
        assert won["label_source"] == "buyer" and won["quality"] == 1.0
        assert won["labels"][-1]["kind"] == "pairwise_win"
        lost = await labels_of(client, market, first["id"])
        assert lost["label_source"] == "agent"  # a preference, not a verdict on the loser

        again = await pick(client, market.buyer, comp["id"], winner_task_id=first["id"])
        assert again.status_code == 409
        assert await balance(client, market) == START_SAT - second["price_sat"]

    async def test_the_payment_and_the_refund_are_one_unit_of_work_with_the_pick(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        first, second, comp = await both_answered(client, market)
        held = START_SAT - first["price_sat"] - second["price_sat"]
        me = (await client.get("/users/me", headers=market.buyer)).json()
        escrows = [ledger_service.escrow_name(uuid.UUID(t["id"])) for t in (first, second)]
        async with state.sessionmaker() as session:
            buyer = await accounts_repository.get(session, uuid.UUID(me["id"]))
            assert buyer is not None
            picked = await comparisons_service.pick(
                session,
                settings=state.settings,
                user=buyer,
                comparison_id=uuid.UUID(comp["id"]),
                data=PickRequest(winner_task_id=uuid.UUID(second["id"])),
            )
            assert picked.settlement_transaction_id is not None
            assert [await ledger_service.balance(session, name) for name in escrows] == [0, 0]
            await session.rollback()  # as a request that fails after the pick
        # neither the payment nor the refund was committed on its own
        assert (await comparison(client, market.buyer, comp["id"]))["status"] == "open"
        for side in (first, second):
            detail = await task_of(client, market, side["id"])
            assert detail["status"] == "delivered"
            assert [t["kind"] for t in detail["transactions"]] == ["escrow_hold"]
        assert await balance(client, market) == held
        await ledger_ok(client, market)

        response = await pick(client, market.buyer, comp["id"], winner_task_id=second["id"])
        assert response.status_code == 200, response.text
        refund = settlement_of(await task_of(client, market, first["id"]))
        assert refund["kind"] == "escrow_refund"
        assert await balance(client, market) == START_SAT - second["price_sat"]
        await ledger_ok(client, market)

    async def test_two_picks_at_once_settle_once(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, second, comp = await both_answered(client, market)
        responses = await asyncio.gather(
            pick(client, market.buyer, comp["id"], winner_task_id=first["id"]),
            pick(client, market.buyer, comp["id"], winner_task_id=second["id"]),
        )
        assert sorted(r.status_code for r in responses) == [200, 409]
        (won,) = [r.json() for r in responses if r.status_code == 200]
        winner = first if won["winner_task_id"] == first["id"] else second
        assert await balance(client, market) == START_SAT - winner["price_sat"]
        await ledger_ok(client, market)

    async def test_a_loser_the_buyer_calls_wrong_is_labelled_a_failure(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, second, comp = await both_answered(client, market)
        response = await pick(
            client, market.buyer, comp["id"], winner_task_id=second["id"], loser_failed=True
        )
        assert response.status_code == 200, response.text
        lost = await labels_of(client, market, first["id"])
        assert lost["label_source"] == "buyer" and lost["quality"] == 0.0
        assert lost["labels"][-1]["kind"] == "pairwise_loss"

    async def test_nobody_picking_in_time_pays_dukes_own_choice(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        first, second, comp = await both_answered(client, market)
        async with state.sessionmaker() as session:
            row = await session.get(Comparison, uuid.UUID(comp["id"]))
            assert row is not None
            row.pick_by = utcnow() - timedelta(seconds=1)
            await session.commit()
        async with state.sessionmaker() as session:
            assert await tasks_service.settle_due(session, settings=state.settings) == 1
            await session.commit()
        lapsed = await comparison(client, market.buyer, comp["id"])
        assert lapsed["status"] == "lapsed"
        paid = await task_of(client, market, first["id"])
        refunded = await task_of(client, market, second["id"])
        assert paid["status"] == "completed" and refunded["status"] == "rejected"
        payment = settlement_of(paid)
        assert payment["kind"] == "escrow_release"
        assert payment["id"] == lapsed["settlement_transaction_id"]
        assert payment["legs"][f"agent:{first['agent_id']}"] == first["price_sat"]
        refund = settlement_of(refunded)
        assert refund["kind"] == "escrow_refund"
        assert refund["legs"] == {
            f"escrow:{second['id']}": -second["escrow_sat"],
            f"wallet:{market.buyer_id}": second["escrow_sat"],
        }
        assert await balance(client, market) == START_SAT - first["price_sat"]
        assert await earnings(state, first["agent_id"]) == first["price_sat"]
        late = await pick(client, market.buyer, comp["id"], winner_task_id=second["id"])
        assert late.status_code == 409
        await ledger_ok(client, market)


class TestBothMode:
    async def test_both_agents_are_paid_and_the_pick_labels_the_winner(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        first, second, comp = await both_answered(client, market, payment="both")
        assert first["accept_by"] is not None  # the plain dispute window runs
        response = await pick(client, market.buyer, comp["id"], winner_task_id=first["id"])
        assert response.status_code == 200, response.text
        assert response.json()["settlement_transaction_id"] is None
        for task in (first, second):
            accepted = await client.post(f"/tasks/{task['id']}/accept", headers=market.buyer)
            assert accepted.status_code == 200, accepted.text
        assert await balance(client, market) == (
            START_SAT - first["price_sat"] - second["price_sat"]
        )
        assert await earnings(state, first["agent_id"]) == first["price_sat"]
        assert await earnings(state, second["agent_id"]) == second["price_sat"]
        await ledger_ok(client, market)
        assert (await labels_of(client, market, first["id"]))["labels"][-2]["kind"] == (
            "pairwise_win"
        )


class TestPickRules:
    async def test_a_pick_before_both_answers_are_delivered_is_refused(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, comp = await compared_task(client, market)
        await answer(client, market, first["id"], "4")
        response = await pick(client, market.buyer, comp["id"], winner_task_id=first["id"])
        assert response.status_code == 409 and "delivered" in response.json()["detail"]

    async def test_only_the_buyer_or_a_curator_picks(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, _, comp = await both_answered(client, market)
        _, stranger = await register(client)
        for headers in (stranger, market.operator):
            response = await pick(client, headers, comp["id"], winner_task_id=first["id"])
            assert response.status_code == 404
            assert (
                await client.get(f"/comparisons/{comp['id']}", headers=headers)
            ).status_code == 404
        assert (await client.get("/comparisons", headers=stranger)).json()["total"] == 0
        wrong = await pick(client, market.admin, comp["id"], winner_task_id=str(uuid.uuid4()))
        assert wrong.status_code == 400 and "winner_task_id" in wrong.json()["detail"]
        response = await pick(client, market.admin, comp["id"], winner_task_id=first["id"])
        assert response.status_code == 200, response.text
        assert response.json()["pick_source"] == "curator"
        won = await labels_of(client, market, first["id"])
        assert won["label_source"] == "curator"
        listed = (await client.get("/comparisons", headers=market.buyer)).json()
        assert [c["id"] for c in listed["items"]] == [comp["id"]]


class TestOneSideFails:
    async def test_the_failed_side_is_refunded_and_the_other_settles_as_a_plain_task(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        first, comp = await compared_task(client, market)
        await answer(client, market, comp["sibling_task_id"], "4")
        second = await task_of(client, market, comp["sibling_task_id"])
        assert second["accept_by"] is None  # waiting for the other answer
        await answer(client, market, first["id"], "", success=False)
        assert (await comparison(client, market.buyer, comp["id"]))["status"] == "void"
        second = await task_of(client, market, comp["sibling_task_id"])
        assert second["accept_by"] is not None  # its dispute window started
        assert await balance(client, market) == START_SAT - second["escrow_sat"]
        response = await pick(client, market.buyer, comp["id"], winner_task_id=second["id"])
        assert response.status_code == 409
        accepted = await client.post(f"/tasks/{second['id']}/accept", headers=market.buyer)
        assert accepted.status_code == 200, accepted.text
        assert await earnings(state, second["agent_id"]) == second["price_sat"]
        await ledger_ok(client, market)

    async def test_a_rejected_side_voids_the_comparison(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, second, comp = await both_answered(client, market)
        rejected = await client.post(
            f"/tasks/{first['id']}/reject", headers=market.buyer, json={"reason": "wrong"}
        )
        assert rejected.status_code == 200, rejected.text
        assert (await comparison(client, market.buyer, comp["id"]))["status"] == "void"
        assert (await task_of(client, market, second["id"]))["accept_by"] is not None
        await ledger_ok(client, market)


class TestDatasets:
    async def test_a_pick_is_a_dpo_pair_and_a_router_label(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, second, comp = await both_answered(client, market)
        assert (
            await pick(client, market.buyer, comp["id"], winner_task_id=second["id"])
        ).is_success
        dpo = await client.get("/admin/datasets/dpo", headers=market.admin)
        assert dpo.status_code == 200, dpo.text
        rows = [json.loads(line) for line in dpo.text.splitlines()]
        assert rows == [
            {
                "prompt": [{"role": "user", "content": first["description"]}],
                "chosen": [{"role": "assistant", "content": "def add(a, b): return a + b"}],
                "rejected": [{"role": "assistant", "content": "def add(a, b): return a - b"}],
            }
        ]
        manifest = (
            await client.get(
                "/admin/datasets/dpo", headers=market.admin, params={"format": "manifest"}
            )
        ).json()
        assert manifest["label_sources"] == {"pairwise": 1}
        assert manifest["source_task_ids"] == [first["id"]]
        curated_only = await client.get(
            "/admin/datasets/dpo", headers=market.admin, params={"source": "curator"}
        )
        assert curated_only.text == ""
        router = await client.get("/admin/datasets/router", headers=market.admin)
        labels = {
            row["task_id"]: row["router_agent_id"]
            for row in map(json.loads, router.text.splitlines())
        }
        assert labels == {first["id"]: second["agent_id"], second["id"]: second["agent_id"]}

    async def test_the_cli_exports_the_pair_as_jsonl_and_parquet(
        self,
        client: httpx.AsyncClient,
        market: Market,
        settings: Settings,
        database_url: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        first, second, comp = await both_answered(client, market)
        response = await pick(client, market.admin, comp["id"], winner_task_id=first["id"])
        assert response.status_code == 200, response.text
        monkeypatch.setenv("DUKENET_VAR_DIR", str(settings.var_dir))
        monkeypatch.setenv("DUKENET_DATABASE_URL", database_url)
        out = tmp_path / "dpo"
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["datasets", "export", "dpo", "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["rows"] == 1 and manifest["label_sources"] == {"pairwise": 1}
        assert manifest["source_task_ids"] == [second["id"]]  # keyed by the rejected answer
        (row,) = [json.loads(line) for line in (out / "dpo.jsonl").read_text().splitlines()]
        assert row["chosen"][0]["content"] == "def add(a, b): return a - b"
        assert row["rejected"][0]["content"] == "def add(a, b): return a + b"
        assert pq.read_table(out / "dpo.parquet").to_pylist() == [row]

    async def test_a_private_task_pair_never_leaves(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        first, comp = await compared_task(client, market, private=True)
        await answer(client, market, first["id"], "one")
        await answer(client, market, comp["sibling_task_id"], "two")
        second = await task_of(client, market, comp["sibling_task_id"])
        assert second["private"] is True
        assert (await pick(client, market.buyer, comp["id"], winner_task_id=first["id"])).is_success
        dpo = await client.get("/admin/datasets/dpo", headers=market.admin)
        assert dpo.text == ""


class TestShare:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"comparison_share": 0.5, "routing_seed": 7})

    async def test_the_draw_and_its_probability_are_in_every_receipt(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        draws = []
        for i in range(16):
            created = await submit_task(client, market.buyer, description=f"Task {i}.")
            assert created.status_code == 201, created.text
            draws.append(created.json()["routing"]["comparison"])
        assert all(d["probability"] == 0.5 and d["requested"] is False for d in draws)
        compared = [d for d in draws if d["compared"]]
        assert 0 < len(compared) < len(draws)
        listed = (await client.get("/comparisons", headers=market.buyer)).json()
        assert listed["total"] == len(compared)
        assert {c["id"] for c in listed["items"]} == {d["comparison_id"] for d in compared}
        assert all(c["origin"] == "share" and c["probability"] == 0.5 for c in listed["items"])

    async def test_a_drawn_comparison_with_no_second_agent_is_skipped(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        draws = []
        for i in range(8):
            created = await submit_task(
                client,
                market.buyer,
                description=f"Task {i}.",
                exclude_agent_ids=[market.agents[1]["id"]],
            )
            assert created.status_code == 201, created.text
            draws.append(created.json()["routing"]["comparison"])
        skipped = [d for d in draws if "skipped" in d]
        assert skipped and all(d["compared"] is False for d in skipped)
        assert "excluded" in skipped[0]["skipped"]
        assert (await client.get("/comparisons", headers=market.buyer)).json()["total"] == 0
        tasks = (await client.get("/tasks", headers=market.buyer)).json()
        assert tasks["total"] == 8
        await ledger_ok(client, market)
