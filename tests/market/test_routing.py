"""Routing a task: Thompson-sampling and epsilon-greedy receipts (``market.routing.route``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from dukenet.agents.models import Agent, AgentKind
from dukenet.config import Settings
from dukenet.errors import BadRequest
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.market.routing import (
    RoutingReceipt,
    RoutingRequest,
    ThompsonExploration,
    exploration_from_settings,
    route,
)

REFERENCE = 100_000


def _agent(name: str, base_price_sat: int) -> Agent:
    return Agent(
        id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        name=name,
        kind=AgentKind.REPLAY,
        owner_id=uuid.uuid4(),
        base_price_sat=base_price_sat,
        reputation_multiplier=1.5,
        success_rate=0.5,
    )


AGENTS = [_agent("cheap", 1_000), _agent("mid", 3_000), _agent("dear", 20_000)]
NEWCOMER = _agent("newcomer", 2_000)
RATES = {"cheap": 0.5, "mid": 0.8, "dear": 0.85}


@pytest.fixture(scope="module")
def router() -> DukeRouter:
    rng = np.random.default_rng(0)
    samples = [
        OutcomeSample(
            f"t{i}", f"Translate sentence {i}.", 2, str(a.id), rng.random() < RATES[a.name]
        )
        for i in range(150)
        for a in AGENTS
    ]
    return DukeRouter.fit(samples, RouterConfig())


def _request(cost_weight: float = 1.0, max_price_sat: int | None = None) -> RoutingRequest:
    return RoutingRequest("Translate sentence 7777.", 2, cost_weight, max_price_sat)


def _route(
    router: DukeRouter | None,
    rng: np.random.Generator,
    *,
    request: RoutingRequest | None = None,
    agents: Sequence[Agent] = AGENTS,
    model_version: int | None = 1,
    epsilon: float = 0.0,
    **options: Any,
) -> RoutingReceipt:
    """``route`` for this module's request and agents; ``options`` go to ``route`` as they are."""
    return route(
        request or _request(),
        agents,
        router=router,
        model_version=model_version,
        reference_price_sat=REFERENCE,
        epsilon=epsilon,
        rng=rng,
        **options,
    )


class TestThompsonRouting:
    def test_receipt_records_how_the_propensity_was_computed(self, router: DukeRouter) -> None:
        receipt = _route(
            router,
            np.random.default_rng(0),
            agents=[*AGENTS, NEWCOMER],
            model_version=3,
            thompson=ThompsonExploration(floor=0.05, cost_cap=None, n_draws=128),
        )
        body = receipt.as_json()
        assert body["exploration"]["method"] == "thompson"
        assert body["exploration"]["n_draws"] == 128
        assert body["exploration"]["floor"] == 0.05
        by_name = {c["agent_name"]: c for c in body["candidates"]}
        assert sum(c["propensity"] for c in body["candidates"]) == pytest.approx(1.0, abs=1e-5)
        assert by_name[receipt.agent.name]["propensity"] == pytest.approx(receipt.propensity)
        # The newcomer has no outcomes: the widest posterior of all.
        assert by_name["newcomer"]["logit_sd"] == pytest.approx(1.0)
        assert by_name["newcomer"]["logit_sd"] > max(
            c["logit_sd"] for c in body["candidates"] if c["agent_name"] != "newcomer"
        )

    def test_newcomer_gets_traffic(self, router: DukeRouter) -> None:
        rng = np.random.default_rng(1)
        names = [
            _route(
                router,
                rng,
                agents=[*AGENTS, NEWCOMER],
                thompson=ThompsonExploration(floor=0.02, n_draws=64),
            ).agent.name
            for _ in range(400)
        ]
        assert names.count("newcomer") / len(names) > 0.05
        assert names.count("mid") == max(names.count(n) for n in set(names))

    def test_cost_cap_keeps_exploration_near_the_greedy_price(self, router: DukeRouter) -> None:
        rng = np.random.default_rng(2)
        receipts = [
            _route(
                router,
                rng,
                thompson=ThompsonExploration(floor=0.3, cost_cap=0.5, cost_cap_kind="price"),
            )
            for _ in range(300)
        ]
        greedy = _route(
            router,
            rng,
            thompson=ThompsonExploration(floor=0.0, scale=0.0),
        )
        assert greedy.agent.name == "mid"
        assert max(r.price_sat for r in receipts) <= 1.5 * greedy.price_sat
        assert {r.agent.name for r in receipts} == {"cheap", "mid"}

    def test_canary_share_routes_by_the_challenger_with_mixture_propensities(
        self, router: DukeRouter
    ) -> None:
        # A challenger that believes "dear" is far better: it sends its share of tasks there.
        rng = np.random.default_rng(4)
        samples = [
            OutcomeSample(
                f"c{i}",
                f"Translate sentence {i}.",
                2,
                str(a.id),
                rng.random() < {"cheap": 0.1, "mid": 0.2, "dear": 0.99}[a.name],
            )
            for i in range(150)
            for a in AGENTS
        ]
        challenger = DukeRouter.fit(samples, RouterConfig())
        thompson = ThompsonExploration(floor=0.02, n_draws=64)

        def receipt(share: float, seed: int) -> dict[str, Any]:
            return _route(
                router,
                np.random.default_rng(seed),
                thompson=thompson,
                challenger=challenger,
                challenger_version=2,
                canary_share=share,
            ).as_json()

        alone = [receipt(0.0, seed) for seed in range(300)]
        mixed = [receipt(0.3, seed) for seed in range(300)]
        assert all("canary" not in r["exploration"] for r in alone)
        canaries = [r["exploration"]["canary"] for r in mixed]
        assert all(c["model_version"] == 2 and c["share"] == 0.3 for c in canaries)
        acted = np.array([c["acted"] for c in canaries])
        assert 0.2 < acted.mean() < 0.4
        dear = np.array([r["agent_name"] == "dear" for r in mixed])
        assert dear[acted].mean() > 0.8 and dear[~acted].mean() < 0.2
        for r in mixed:
            candidates = r["candidates"]
            assert sum(c["propensity"] for c in candidates) == pytest.approx(1.0, abs=1e-5)
            by_id = {c["agent_id"]: c for c in candidates}
            assert by_id[r["agent_id"]]["propensity"] == pytest.approx(r["propensity"], abs=1e-6)
        # The recorded propensities are the mixture's: the challenger's favourite gets at
        # least the share times its own probability.
        p_dear = [
            next(c["propensity"] for c in r["candidates"] if c["agent_name"] == "dear")
            for r in mixed
        ]
        assert min(p_dear) >= 0.3 * 0.5

    def test_before_the_first_model_routing_is_uniform(self) -> None:
        receipt = _route(
            None,
            np.random.default_rng(0),
            model_version=None,
            thompson=ThompsonExploration(),
        )
        assert receipt.propensity == pytest.approx(1 / 3)
        assert receipt.as_json()["exploration"]["method"] == "uniform"

    def test_budget_still_filters_first(self, router: DukeRouter) -> None:
        with pytest.raises(BadRequest):
            _route(
                router,
                np.random.default_rng(0),
                request=_request(max_price_sat=100),
                thompson=ThompsonExploration(),
            )


class TestSettings:
    def test_thompson_is_the_default(self) -> None:
        exploration = exploration_from_settings(Settings())
        assert exploration == ThompsonExploration(
            floor=Settings().thompson_floor,
            scale=Settings().thompson_scale,
            cost_cap=Settings().exploration_cost_cap,
            n_draws=Settings().thompson_draws,
            budget=Settings().exploration_budget,
            top_k=Settings().thompson_top_k,
        )
        assert exploration.budget == 0.1  # the product bounds the explored share by default

    def test_epsilon_remains_available(self, router: DukeRouter) -> None:
        settings = Settings(exploration="epsilon", exploration_epsilon=0.2)
        assert exploration_from_settings(settings) is None
        receipt = _route(
            router,
            np.random.default_rng(0),
            epsilon=settings.exploration_epsilon,
            thompson=exploration_from_settings(settings),
        )
        body = receipt.as_json()
        assert body["exploration"]["method"] == "epsilon"
        assert receipt.propensity in (
            pytest.approx(1 - 0.2 + 0.2 / 3),
            pytest.approx(0.2 / 3),
        )
