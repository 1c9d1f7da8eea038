"""A model trained with no held-out rows is never promoted: nothing was scored on rows it did
not train on (``learning.service.judge_challenger``)."""

from __future__ import annotations

from dukenet.learning.evaluation import LoggedDecision, PromotionGate, held_out_split
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.service import judge_challenger

AGENTS = ("a", "b")


def _tiny(seed: int) -> list[OutcomeSample]:
    return [
        OutcomeSample(f"s{seed}-{i}", f"task {i}", 3, AGENTS[i % 2], i % 2 == 0) for i in range(2)
    ]


def test_a_first_model_without_held_out_rows_is_not_promoted() -> None:
    seed, samples = next(
        (s, rows) for s in range(100) if not held_out_split(rows := _tiny(s), seed=s)[1]
    )
    decisions = [
        LoggedDecision(s.description, 3, AGENTS, (1_000.0, 1_000.0), i % 2, 0.5, s.success, 1e5)
        for i, s in enumerate(samples)
    ]
    router = DukeRouter.fit(samples, RouterConfig(n_features=2**10))
    metrics, decision = judge_challenger(
        router, None, samples, decisions, split_seed=seed, gate=PromotionGate()
    )
    assert metrics["n_held_out"] == 0
    assert not decision.promote
    assert "no held-out rows" in decision.reason
