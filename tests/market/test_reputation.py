"""Reputation: the Beta(2, 2)-smoothed success rate, its price tiers (≥0.95 → 2.0, ≥0.85 → 1.8,
≥0.70 → 1.5, else 1.2), and an agent's multiplier moving as its outcomes accumulate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.market.reputation import reputation_multiplier, smoothed_success_rate
from tests.factories import create_admin, credit, llm_agent, register, submit_task

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


class TestSmoothedSuccessRate:
    def test_beta_2_2_prior(self) -> None:
        assert smoothed_success_rate(0, 0) == 0.5
        assert smoothed_success_rate(1, 1) == 0.6
        assert smoothed_success_rate(0, 1) == 0.4
        assert smoothed_success_rate(3, 3) == 5 / 7
        assert smoothed_success_rate(100, 100) == 102 / 104

    def test_other_priors(self) -> None:
        assert smoothed_success_rate(3, 4, prior_successes=1, prior_failures=1) == 4 / 6
        assert smoothed_success_rate(3, 4, prior_successes=0, prior_failures=0) == 0.75

    @pytest.mark.parametrize(("successes", "total"), [(-1, 0), (0, -1), (3, 2)])
    def test_impossible_counts_are_refused(self, successes: int, total: int) -> None:
        with pytest.raises(ValueError, match="successes <= total"):
            smoothed_success_rate(successes, total)


class TestTiers:
    @pytest.mark.parametrize(
        ("rate", "multiplier"),
        [
            (1.0, 2.0),
            (0.95, 2.0),
            (0.9499, 1.8),
            (0.85, 1.8),
            (0.8499, 1.5),
            (0.70, 1.5),
            (0.6999, 1.2),
            (0.5, 1.2),
            (0.0, 1.2),
        ],
    )
    def test_multiplier_of_a_rate(self, rate: float, multiplier: float) -> None:
        assert reputation_multiplier(rate) == multiplier

    @pytest.mark.parametrize(
        ("streak", "multiplier"), [(2, 1.2), (3, 1.5), (9, 1.5), (10, 1.8), (35, 1.8), (36, 2.0)]
    )
    def test_unbroken_successes_needed_for_each_tier(self, streak: int, multiplier: float) -> None:
        # (n + 2) / (n + 4) reaches 0.70 at n = 3, 0.85 at n = 10 and 0.95 at n = 36.
        assert reputation_multiplier(smoothed_success_rate(streak, streak)) == multiplier


@pytest.fixture
def _fast_password_hashing(state: AppState) -> None:
    """Argon2 at its minimum cost: these tests exercise the flows, not the hash's strength."""
    state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


class _Track:
    """A buyer pinning complexity-2 tasks to one LLM agent (base 1,000 sat) whose operator
    reports the outcomes by hand."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        buyer: dict[str, str],
        operator: dict[str, str],
        agent: dict[str, Any],
    ) -> None:
        self.client, self.buyer, self.operator, self.agent = client, buyer, operator, agent

    @classmethod
    async def open(cls, client: httpx.AsyncClient, state: AppState) -> _Track:
        _, admin = await create_admin(state)
        buyer, buyer_headers = await register(client)
        await credit(client, admin, buyer["id"], 1_000_000)
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
        return cls(client, buyer_headers, operator, agent)

    async def run(self, outcomes: str) -> int:
        """Finish one task per letter of ``outcomes`` (S success, F failure); return the
        last price paid."""
        price = 0
        for letter in outcomes:
            task = (
                await submit_task(self.client, self.buyer, complexity=2, agent_id=self.agent["id"])
            ).json()
            price = task["price_sat"]
            claim = (await self.client.post("/runner/claim", headers=self.operator, json={})).json()
            response = await self.client.post(
                f"/runner/tasks/{task['id']}/result",
                headers=self.operator,
                json={
                    "lease_token": claim["lease_token"],
                    "idempotency_key": f"{task['id']}:1",
                    "text": "answer",
                    "success": letter == "S",
                },
            )
            assert response.status_code == 201, response.text
        return price

    async def shown(self) -> dict[str, Any]:
        """The agent as the market shows it."""
        response = await self.client.get(f"/agents/{self.agent['id']}", headers=self.buyer)
        assert response.status_code == 200
        agent: dict[str, Any] = response.json()
        return agent


ONE_BUYER_UNWEIGHTED = {"reputation_per_buyer_cap": 1_000.0, "reputation_pinned_weight": 1.0}
"""The tier arithmetic on one buyer's pinned record, without the wash-trading weights (those:
``test_wash_trading.py``)."""


@pytest.mark.usefixtures("_fast_password_hashing")
class TestReputationFromOutcomes:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """One buyer's pinned tasks counted in full."""
        return settings.model_copy(update=ONE_BUYER_UNWEIGHTED)

    async def test_multiplier_and_price_follow_the_smoothed_rate(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        track = await _Track.open(client, state)
        assert await track.run("SS") == 2_400  # 1,000 × 2 × 1.2
        shown = await track.shown()
        assert shown["success_rate"] == pytest.approx(4 / 6)
        assert shown["reputation_multiplier"] == 1.2
        assert shown["finished_tasks"] == 2

        assert await track.run("S") == 2_400  # priced before this third success was known
        shown = await track.shown()
        assert shown["success_rate"] == pytest.approx(5 / 7)
        assert shown["reputation_multiplier"] == 1.5
        assert await track.run("F") == 3_000  # 1,000 × 2 × 1.5
        shown = await track.shown()
        assert shown["success_rate"] == pytest.approx(5 / 8)
        assert shown["reputation_multiplier"] == 1.2

        assert await track.run("SS") == 2_400
        shown = await track.shown()
        assert shown["success_rate"] == pytest.approx(7 / 10)  # exactly on the 0.70 threshold
        assert shown["reputation_multiplier"] == 1.5
        assert shown["finished_tasks"] == 6


@pytest.mark.usefixtures("_fast_password_hashing")
class TestReputationWindow:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """Reputation over the last three outcomes only (one buyer's pinned tasks in full)."""
        return settings.model_copy(update={"reputation_window": 3, **ONE_BUYER_UNWEIGHTED})

    async def test_only_the_last_outcomes_count(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        track = await _Track.open(client, state)
        await track.run("FSSS")
        shown = await track.shown()
        # Over all four outcomes the rate would be 5/8 (1.2); the window keeps S, S, S: 5/7.
        assert shown["success_rate"] == pytest.approx(5 / 7)
        assert shown["reputation_multiplier"] == 1.5
        assert shown["finished_tasks"] == 4
