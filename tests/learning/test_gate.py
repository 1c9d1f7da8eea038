"""The promotion gate refuses broken models: one trained on shuffled labels, one that sends every
task to the dearest agent (``learning.service.judge_challenger``, the trainer's own path)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dukenet.learning.evaluation import LoggedDecision, PromotionGate
from dukenet.learning.features import TaskFeatures
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.service import judge_challenger

AGENTS = ("math-cheap", "prose-cheap", "dear")
PRICES = (1_000.0, 1_000.0, 60_000.0)
VALUE = 100_000.0


def _market(
    n: int = 400, seed: int = 0, prefix: str = "t"
) -> tuple[list[OutcomeSample], list[LoggedDecision]]:
    """Uniformly logged outcomes: each cheap agent is good at one kind of task, the dear one is
    mediocre everywhere and 60x the price."""
    rng = np.random.default_rng(seed)
    samples, decisions = [], []
    for i in range(n):
        math_task = i % 2 == 0
        text = f"compute the sum of {i} and {i + 1}" if math_task else f"write a poem about {i}"
        j = int(rng.integers(3))
        p = {0: 0.9 if math_task else 0.1, 1: 0.1 if math_task else 0.9, 2: 0.6}[j]
        success = bool(rng.random() < p)
        samples.append(OutcomeSample(f"{prefix}{i}", text, 3, AGENTS[j], success))
        decisions.append(LoggedDecision(text, 3, AGENTS, PRICES, j, 1 / 3, success, VALUE))
    return samples, decisions


@pytest.fixture(scope="module")
def market() -> tuple[list[OutcomeSample], list[LoggedDecision], DukeRouter]:
    samples, decisions = _market()
    champion = DukeRouter.fit(samples, RouterConfig(n_features=2**12))
    return samples, decisions, champion


class TestGateRefusesBrokenModels:
    def test_a_model_trained_on_shuffled_labels_is_refused(
        self, market: tuple[list[OutcomeSample], list[LoggedDecision], DukeRouter]
    ) -> None:
        samples, decisions, champion = market
        labels = np.random.default_rng(1).permutation([s.success for s in samples])
        shuffled = [
            dataclasses.replace(s, success=bool(y)) for s, y in zip(samples, labels, strict=True)
        ]
        broken = DukeRouter.fit(shuffled, RouterConfig(n_features=2**12))
        metrics, decision = judge_challenger(
            broken, champion, samples, decisions, split_seed=0, gate=PromotionGate()
        )
        assert not decision.promote and decision.rule == "guardrail"
        assert decision.high is not None and decision.high < 0  # worse beyond noise
        assert metrics["promotion"]["reason"] == decision.reason  # recorded with its evidence
        assert metrics["policy"]["champion"]["dr"] > metrics["policy"]["challenger"]["dr"]

    def test_a_model_that_routes_everything_to_the_dearest_agent_is_refused(
        self, market: tuple[list[OutcomeSample], list[LoggedDecision], DukeRouter]
    ) -> None:
        samples, decisions, champion = market
        dear_always = [dataclasses.replace(s, success=s.agent == "dear") for s in samples]
        broken = DukeRouter.fit(dear_always, RouterConfig(n_features=2**12))
        p = broken.predict_proba(
            [TaskFeatures(s.description, s.complexity) for s in samples[:10]], list(AGENTS)
        )
        assert (p.argmax(axis=1) == 2).all()  # it does prefer the dear agent everywhere
        _, decision = judge_challenger(
            broken, champion, samples, decisions, split_seed=0, gate=PromotionGate()
        )
        assert not decision.promote

    def test_a_retrained_champion_passes(
        self, market: tuple[list[OutcomeSample], list[LoggedDecision], DukeRouter]
    ) -> None:
        samples, decisions, champion = market
        more, more_decisions = _market(600, seed=5, prefix="u")
        challenger = DukeRouter.fit(samples + more, RouterConfig(n_features=2**12))
        _, decision = judge_challenger(
            challenger,
            champion,
            samples + more,
            decisions + more_decisions,
            split_seed=0,
            gate=PromotionGate(),
        )
        assert decision.promote, decision.reason
