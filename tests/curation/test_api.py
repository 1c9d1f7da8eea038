"""The curation queue: rejected, low-rated, corrected, evaluator-failed and suspiciously routed
results, filterable and paginated; curators' decisions relabel the outcome, are recorded with
who and when, and are refused (409) on a task that changed since the curator saw it."""

from __future__ import annotations

from typing import Any

import httpx

from dukenet.kit.state import AppState
from tests.factories import llm_agent
from tests.feedback.test_labels import UNUSED_ENDPOINT, Market, deliver, shown

QUEUE = "/admin/curation/queue"


async def queue(client: httpx.AsyncClient, market: Market, **params: Any) -> dict[str, Any]:
    response = await client.get(QUEUE, headers=market.admin, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def item(body: dict[str, Any], task_id: str) -> dict[str, Any]:
    (found,) = [x for x in body["items"] if x["task_id"] == task_id]
    return found


async def rejected_task(client: httpx.AsyncClient, market: Market) -> str:
    """Deliver a task and have the buyer reject it; return its id."""
    task_id = await deliver(client, market)
    response = await client.post(
        f"/tasks/{task_id}/reject", headers=market.buyer, json={"reason": "wrong"}
    )
    assert response.status_code == 200, response.text
    return task_id


async def decide(
    client: httpx.AsyncClient, market: Market, task_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/admin/curation/tasks/{task_id}/decisions", headers=market.admin, json=body
    )


class TestQueue:
    async def test_it_lists_what_needs_a_look_with_its_reasons(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        good = await deliver(client, market)
        assert (await client.post(f"/tasks/{good}/accept", headers=market.buyer)).is_success
        rejected = await deliver(client, market)
        response = await client.post(
            f"/tasks/{rejected}/reject", headers=market.buyer, json={"reason": "off topic"}
        )
        assert response.is_success
        wrong = await deliver(
            client, market, text="Answer: A", evaluator={"kind": "choice", "reference": "B"}
        )
        corrected = await deliver(client, market)
        response = await client.put(
            f"/tasks/{corrected}/feedback",
            headers=market.buyer,
            json={"rating": 2, "correction": "43"},
        )
        assert response.is_success

        body = await queue(client, market)
        assert body["total"] == 3
        assert [x["task_id"] for x in body["items"]] == [corrected, wrong, rejected]
        assert item(body, rejected)["reasons"] == ["rejected"]
        assert item(body, rejected)["rejection_reason"] == "off topic"
        assert item(body, wrong)["reasons"] == ["evaluator_failed"]
        assert item(body, corrected)["reasons"] == ["low_rating", "corrected"]
        assert item(body, corrected)["correction"] == "43"
        assert item(body, corrected)["result_text"] == "42"

        only = await queue(client, market, reason="evaluator_failed")
        assert [x["task_id"] for x in only["items"]] == [wrong]
        page = await queue(client, market, limit=1, offset=1)
        assert page["total"] == 3 and [x["task_id"] for x in page["items"]] == [wrong]
        other_agent = await queue(client, market, agent_id=market.agent["id"])
        assert other_agent["total"] == 3

    async def test_the_same_buyers_task_succeeding_elsewhere_flags_the_routing(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        failed = await deliver(client, market, success=False, description="Sum 2 and 2.")
        better = await llm_agent(client, market.operator, base_url=UNUSED_ENDPOINT)
        good = Market(market.admin, market.buyer, market.operator, better)
        await deliver(client, good, description="Sum 2 and 2.")
        body = await queue(client, market, reason="routing_suspect")
        flagged = item(body, failed)
        assert flagged["suggested_agent_ids"] == [better["id"]]


class TestDecisions:
    async def test_approving_relabels_as_curator_and_leaves_the_open_queue(
        self, client: httpx.AsyncClient, market: Market, state: AppState
    ) -> None:
        task_id = await rejected_task(client, market)
        version = item(await queue(client, market), task_id)["version"]
        response = await decide(client, market, task_id, action="approve", version=version)
        assert response.status_code == 201, response.text
        decision = response.json()
        assert decision["quality"] == 1.0 and decision["created_at"]
        labels = await shown(client, market.buyer, task_id)
        assert (labels["label_source"], labels["quality"]) == ("curator", 1.0)
        assert labels["labels"][-1]["kind"] == "curator_approve"
        assert (await queue(client, market))["total"] == 0
        decided = await queue(client, market, status="decided")
        assert item(decided, task_id)["decision"]["id"] == decision["id"]
        history = await client.get(
            f"/admin/curation/tasks/{task_id}/decisions", headers=market.admin
        )
        (recorded,) = history.json()
        assert recorded["curator_id"] == decision["curator_id"] and recorded["action"] == "approve"
        # the buyer's new feedback changes the task: it is open again
        await client.put(f"/tasks/{task_id}/feedback", headers=market.buyer, json={"rating": 1})
        assert item(await queue(client, market), task_id)["decision"]["id"] == decision["id"]

    async def test_a_decision_on_a_task_that_changed_meanwhile_is_a_conflict(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await rejected_task(client, market)
        version = item(await queue(client, market), task_id)["version"]
        await client.put(f"/tasks/{task_id}/feedback", headers=market.buyer, json={"rating": 2})
        response = await decide(
            client, market, task_id, action="ideal_response", version=version, ideal_response="4"
        )
        assert response.status_code == 409 and "changed" in response.text
        history = await client.get(
            f"/admin/curation/tasks/{task_id}/decisions", headers=market.admin
        )
        assert history.json() == []
        fresh = item(await queue(client, market), task_id)["version"]
        assert fresh != version
        response = await decide(
            client, market, task_id, action="ideal_response", version=fresh, ideal_response="4"
        )
        assert response.status_code == 201, response.text
        labels = await shown(client, market.buyer, task_id)
        assert (labels["label_source"], labels["quality"]) == ("curator", 0.0)

    async def test_router_labels_discards_and_bad_decisions(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await rejected_task(client, market)
        version = item(await queue(client, market), task_id)["version"]
        for bad in (
            {"action": "ideal_response"},
            {"action": "router_label"},
            {"action": "discard", "quality": 0.5},
            {"action": "approve", "quality": 1.5},
            {"action": "promote"},
        ):
            response = await decide(client, market, task_id, version=version, **bad)
            assert response.status_code == 422, (bad, response.text)
        unknown = await decide(
            client,
            market,
            task_id,
            action="router_label",
            version=version,
            router_agent_id="00000000-0000-0000-0000-000000000000",
        )
        assert unknown.status_code == 404
        labelled = await decide(
            client,
            market,
            task_id,
            action="router_label",
            version=version,
            router_agent_id=market.agent["id"],
        )
        assert labelled.status_code == 201 and labelled.json()["quality"] is None
        discarded = await decide(client, market, task_id, action="discard", version=version)
        assert discarded.status_code == 201, discarded.text
        labels = await shown(client, market.buyer, task_id)
        assert labels["label_source"] == "buyer"  # neither relabels
        no_outcome = await decide(client, market, market.agent["id"], action="discard", version="v")
        assert no_outcome.status_code == 404
