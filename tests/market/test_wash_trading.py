"""Wash trading: one colluding buyer pinning and 5-starring an agent cannot pump its reputation
tier; independent buyers can earn it; an operator's own purchases do not count."""

from __future__ import annotations

import uuid

import httpx
import pytest

from dukenet.kit.state import AppState
from dukenet.market.repository import Evidence
from dukenet.market.reputation import (
    reputation_multiplier,
    smoothed_success_rate,
    weighted_counts,
)
from tests.factories import create_admin, credit, register
from tests.market.test_reputation import _fast_password_hashing, _Track

__all__ = ["_fast_password_hashing"]

OWNER = uuid.uuid4()
DEFAULTS = {"per_buyer_cap": 5.0, "pinned_weight": 0.5}


def _tier(evidence: list[Evidence]) -> float:
    successes, total = weighted_counts(evidence, owner_id=OWNER, **DEFAULTS)
    return reputation_multiplier(smoothed_success_rate(successes, total))


class TestWeightedCounts:
    def test_one_colluding_buyer_stays_at_the_base_tier(self) -> None:
        colluder = uuid.uuid4()
        pinned = [Evidence(colluder, True, True)] * 100
        assert weighted_counts(pinned, owner_id=OWNER, **DEFAULTS) == pytest.approx((2.5, 2.5))
        assert _tier(pinned) == 1.2
        # Unweighted, the same record is the top tier.
        assert reputation_multiplier(smoothed_success_rate(100, 100)) == 2.0

    def test_the_operators_own_purchases_count_for_nothing(self) -> None:
        own = [Evidence(OWNER, True, False)] * 50
        assert weighted_counts(own, owner_id=OWNER, **DEFAULTS) == (0.0, 0.0)

    def test_many_independent_buyers_earn_the_top_tier(self) -> None:
        routed = [Evidence(uuid.uuid4(), True, False) for _ in range(40)]
        assert weighted_counts(routed, owner_id=OWNER, **DEFAULTS) == pytest.approx((40.0, 40.0))
        assert _tier(routed) == 2.0

    def test_a_heavy_buyers_failures_weigh_as_much_as_its_successes(self) -> None:
        buyer = uuid.uuid4()
        mixed = [Evidence(buyer, True, False)] * 8 + [Evidence(buyer, False, False)] * 2
        assert weighted_counts(mixed, owner_id=OWNER, **DEFAULTS) == pytest.approx((4.0, 5.0))


@pytest.mark.usefixtures("_fast_password_hashing")
class TestThroughTheMarket:
    async def test_a_colluding_buyer_pinning_its_agent_does_not_raise_its_price(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        track = await _Track.open(client, state)
        assert await track.run("S" * 12) == 2_400  # 1,000 x 2 x 1.2, every time
        shown = await track.shown()
        assert shown["reputation_multiplier"] == 1.2
        assert shown["success_rate"] == pytest.approx((2.5 + 2) / (2.5 + 4))
        assert shown["finished_tasks"] == 12

        # A second, independent buyer's pinned successes count on their own.
        buyer, other = await register(client)
        _, admin = await create_admin(state)
        await credit(client, admin, buyer["id"], 1_000_000)
        track.buyer = other
        await track.run("SS")
        shown = await track.shown()
        assert shown["success_rate"] == pytest.approx((2.5 + 1 + 2) / (2.5 + 1 + 4))
