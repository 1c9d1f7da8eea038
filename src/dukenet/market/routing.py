"""Routing: choose the agent with the best expected utility ``P(success)·V − price``.

``P(success)`` comes from the champion Duke model (the agents' smoothed success rates before
the first model), ``V = reference_price_sat × complexity / cost_weight`` is the value of a
success to the buyer, prices follow the seed formula. Exploration is ε-greedy (uniform before
the first model) and every decision records its exact propensity for off-policy evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dukenet.agents.models import Agent
from dukenet.errors import BadRequest
from dukenet.learning.features import TaskFeatures
from dukenet.learning.policy import choose
from dukenet.learning.router import DukeRouter
from dukenet.market.pricing import task_price_sat


@dataclass(frozen=True)
class RoutingRequest:
    """What the router needs to know about a task."""

    description: str
    complexity: int
    cost_weight: float
    max_price_sat: int | None
    seed_material: str | None = None


@dataclass(frozen=True)
class RoutingReceipt:
    """The decision and why: the chosen agent, its price, propensity and all candidates."""

    agent: Agent
    price_sat: int
    propensity: float
    model_version: int | None
    candidates: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """Return the receipt as stored with the task."""
        return {
            "agent_id": str(self.agent.id),
            "agent_name": self.agent.name,
            "price_sat": self.price_sat,
            "propensity": self.propensity,
            "model_version": self.model_version,
            "candidates": self.candidates,
        }


def value_sat(reference_price_sat: int, complexity: int, cost_weight: float) -> float:
    """Return the buyer's value of a success in satoshis (``inf`` when cost_weight is 0)."""
    if cost_weight <= 0:
        return math.inf
    return reference_price_sat * complexity / cost_weight


def make_rng(routing_seed: int | None, seed_material: str | None) -> np.random.Generator:
    """Return the generator for one decision: fresh entropy, or derived from a fixed seed and the
    task's content (reproducible runs)."""
    if routing_seed is None:
        return np.random.default_rng()
    digest = hashlib.sha256(f"{routing_seed}\x00{seed_material or ''}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def route(
    request: RoutingRequest,
    agents: Sequence[Agent],
    *,
    router: DukeRouter | None,
    model_version: int | None,
    reference_price_sat: int,
    epsilon: float,
    rng: np.random.Generator,
) -> RoutingReceipt:
    """Pick one of ``agents`` for the task (pure; the caller loads agents and the champion).

    Raises:
        BadRequest: no agent is eligible, or none is within ``max_price_sat``.
    """
    if not agents:
        raise BadRequest("no enabled agent can take this task")
    prices = [
        task_price_sat(a.base_price_sat, request.complexity, a.reputation_multiplier)
        for a in agents
    ]
    eligible = [
        (agent, price)
        for agent, price in zip(agents, prices, strict=True)
        if request.max_price_sat is None or price <= request.max_price_sat
    ]
    if not eligible:
        raise BadRequest(
            f"no agent is within max_price_sat={request.max_price_sat}; the cheapest asks "
            f"{min(prices)} sat"
        )
    features = TaskFeatures(request.description, request.complexity)
    if router is not None:
        p = router.predict_proba([features], [str(a.id) for a, _ in eligible])[0]
        explore = epsilon
    else:
        p = np.array([a.success_rate for a, _ in eligible])
        explore = 1.0
    price_array = np.array([price for _, price in eligible], dtype=float)
    decision = choose(
        p,
        price_array,
        value_sat(reference_price_sat, request.complexity, request.cost_weight),
        epsilon=explore,
        rng=rng,
    )
    agent, price = eligible[decision.index]
    candidates = [
        {
            "agent_id": str(a.id),
            "agent_name": a.name,
            "price_sat": pr,
            "p_success": round(float(p[i]), 6),
            "utility_sat": _finite(float(decision.utilities[i])),
        }
        for i, (a, pr) in enumerate(eligible)
    ]
    order = np.argsort(-decision.utilities, kind="stable")
    candidates = [candidates[i] for i in order]
    return RoutingReceipt(
        agent=agent,
        price_sat=price,
        propensity=decision.propensity,
        model_version=model_version,
        candidates=candidates,
    )


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None
