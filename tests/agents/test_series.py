"""An agent's record over time (``GET /agents/{id}/series``): outcomes, successes by their
current label, buyers' ratings and the reputation formula at each bucket's end, from real tasks
run over the runner API and rated by their buyer, on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from dukenet.accounts import repository as accounts_repository
from dukenet.agents import service
from dukenet.agents.models import Agent
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.ledger.schemas import MoneyBucket
from dukenet.market import reputation
from tests.factories import register
from tests.payments import Market, deliver, market

PRICE = 700  # the human agent's base price (sat)


async def finish(client: httpx.AsyncClient, world: Market, *, rating: int | None = None) -> str:
    """Run one task pinned to the world's agent to a delivered success (the agent's report),
    then, if given, the buyer's 1-5 star rating (which relabels it); return the task id."""
    task_id = await deliver(client, world)
    if rating is not None:
        rated = await client.put(
            f"/tasks/{task_id}/feedback", headers=world.buyer, json={"rating": rating}
        )
        assert rated.status_code == 200, rated.text
    return task_id


async def backdate(state: AppState, task_id: str, to: datetime) -> None:
    """Move the task's outcome to ``to`` (as if the task had finished then)."""
    async with state.sessionmaker() as session:
        await session.execute(
            update(Outcome).where(Outcome.task_id == uuid.UUID(task_id)).values(created_at=to)
        )
        await session.commit()


async def register_agent_at(state: AppState, agent_id: str, to: datetime) -> None:
    """Move the agent's registration to ``to``."""
    async with state.sessionmaker() as session:
        await session.execute(
            update(Agent).where(Agent.id == uuid.UUID(agent_id)).values(created_at=to)
        )
        await session.commit()


async def series(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: str, **params: Any
) -> dict[str, Any]:
    """GET the agent's series; assert it answered 200."""
    response = await client.get(f"/agents/{agent_id}/series", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pinned_rate(successes: int, total: int) -> float:
    """The smoothed success rate of one outside buyer's pinned tasks (weight 0.5 each)."""
    return reputation.smoothed_success_rate(0.5 * successes, 0.5 * total)


class TestBuckets:
    async def test_outcomes_successes_and_ratings_by_day_hour_and_week(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        await finish(client, world, rating=5)
        await finish(client, world, rating=1)  # the agent said success; the buyer's label wins
        await finish(client, world)
        old = await finish(client, world, rating=2)
        three_days_ago = datetime.now(UTC) - timedelta(days=3)
        await backdate(state, old, three_days_ago)

        body = await series(client, world.operator, world.agent_id, days=7)
        assert body["bucket"] == "day" and body["bucket_s"] == 86_400
        assert body["agent_id"] == world.agent_id
        points = body["points"]
        assert len(points) == 7
        assert datetime.fromisoformat(points[0]["start"]) == datetime.fromisoformat(body["since"])
        today = points[-1]
        assert (today["outcomes"], today["successes"]) == (3, 2)
        assert today["success_rate"] == pytest.approx(2 / 3)
        assert (today["ratings"], today["mean_rating"]) == (2, 3.0)
        old_day = points[-4]
        assert (old_day["outcomes"], old_day["successes"], old_day["success_rate"]) == (1, 0, 0.0)
        assert (old_day["ratings"], old_day["mean_rating"]) == (1, 2.0)
        empty = [p for i, p in enumerate(points) if i not in (3, 6)]
        assert all(
            p["outcomes"] == 0 and p["success_rate"] is None and p["mean_rating"] is None
            for p in empty
        )

        by_hour = await series(client, world.operator, world.agent_id, bucket="hour", days=4)
        assert len(by_hour["points"]) == 96 and by_hour["bucket_s"] == 3600
        hit = [p for p in by_hour["points"][:-1] if p["outcomes"]]
        assert len(hit) == 1 and hit[0]["successes"] == 0
        start = datetime.fromisoformat(hit[0]["start"])
        assert start <= three_days_ago < start + timedelta(hours=1)
        assert sum(p["outcomes"] for p in by_hour["points"]) == 4

        by_week = await series(client, world.operator, world.agent_id, bucket="week", days=14)
        assert all(datetime.fromisoformat(p["start"]).weekday() == 0 for p in by_week["points"])
        assert sum(p["outcomes"] for p in by_week["points"]) == 4
        assert sum(p["successes"] for p in by_week["points"]) == 2

        one_day = await series(client, world.operator, world.agent_id, days=1)
        assert [p["outcomes"] for p in one_day["points"]] == [3]


class TestReputation:
    async def test_the_last_point_is_the_agents_current_price_multiplier(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        for rating in (5, 5, 1, None):
            await finish(client, world, rating=rating)
        agent = (await client.get(f"/agents/{world.agent_id}", headers=world.operator)).json()
        last = (await series(client, world.operator, world.agent_id))["points"][-1]
        assert last["smoothed_success_rate"] == pytest.approx(agent["success_rate"])
        assert last["smoothed_success_rate"] == pytest.approx(pinned_rate(3, 4))
        assert last["reputation_multiplier"] == agent["reputation_multiplier"]

    async def test_each_bucket_end_sees_the_outcomes_before_it(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        now = datetime.now(UTC)
        await register_agent_at(state, world.agent_id, now - timedelta(days=4, hours=1))
        await backdate(state, await finish(client, world), now - timedelta(days=3))
        await backdate(state, await finish(client, world, rating=1), now - timedelta(days=2))

        points = (await series(client, world.operator, world.agent_id, days=7))["points"]
        rates = [p["smoothed_success_rate"] for p in points]
        # registered in the bucket of 4 days ago: nothing before it, the prior from it on
        assert rates[:2] == [None, None] and points[1]["reputation_multiplier"] is None
        prior = reputation.smoothed_success_rate(0, 0)
        assert rates[2] == pytest.approx(prior)
        assert rates[3] == pytest.approx(pinned_rate(1, 1))
        assert rates[4:] == pytest.approx([pinned_rate(1, 2)] * 3)
        assert [p["reputation_multiplier"] for p in points[2:]] == [
            reputation.reputation_multiplier(r) for r in rates[2:]
        ]

    async def test_only_the_last_window_outcomes_count_however_they_fall_in_buckets(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        now = datetime.now(UTC)
        await register_agent_at(state, world.agent_id, now - timedelta(days=30))
        # oldest first: 2 failures 5 days ago (before the series), then 3 successes 2 days ago
        # in one bucket, then 1 failure today; a window of 2
        for _ in range(2):
            await backdate(state, await finish(client, world, rating=1), now - timedelta(days=5))
        for minutes in (3, 2, 1):
            task = await finish(client, world)
            await backdate(state, task, now - timedelta(days=2, minutes=minutes))
        await finish(client, world, rating=1)
        settings = state.settings.model_copy(update={"reputation_window": 2})
        user = (await client.get("/users/me", headers=world.operator)).json()
        async with state.sessionmaker() as session:
            operator = await accounts_repository.get(session, uuid.UUID(user["id"]))
            assert operator is not None
            body = await service.series(
                session,
                settings=settings,
                user=operator,
                agent_id=uuid.UUID(world.agent_id),
                bucket=MoneyBucket.DAY,
                days=4,
            )
        rates = [p.smoothed_success_rate for p in body.points]
        assert [p.outcomes for p in body.points] == [0, 3, 0, 1]
        assert rates == pytest.approx(
            [pinned_rate(0, 2), pinned_rate(2, 2), pinned_rate(2, 2), pinned_rate(1, 2)]
        )


class TestAccess:
    async def test_only_its_operator_and_admins_see_it(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        await finish(client, world)
        as_admin = await series(client, world.admin, world.agent_id)
        assert as_admin["points"][-1]["outcomes"] == 1
        _, other = await register(client, role="agent")
        path = f"/agents/{world.agent_id}/series"
        for headers in (other, world.buyer):
            response = await client.get(path, headers=headers)
            assert response.status_code == 404, response.text
            assert world.agent_id in response.json()["detail"]
        missing = await client.get(f"/agents/{uuid.uuid4()}/series", headers=world.admin)
        assert missing.status_code == 404
        assert (await client.get(path)).status_code == 401

    async def test_a_window_too_long_for_the_bucket_names_days(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        world = await market(client, state, base_price_sat=PRICE)
        path = f"/agents/{world.agent_id}/series"
        hours = await client.get(
            path, headers=world.operator, params={"bucket": "hour", "days": 32}
        )
        assert hours.status_code == 422 and "days" in hours.text
        for params in ({"days": 0}, {"days": 367}, {"bucket": "month"}):
            response = await client.get(path, headers=world.operator, params=params)
            assert response.status_code == 422, params
