"""Routing: choose the agent with the best expected utility ``P(success)·V − price``.

``P(success)`` comes from the champion Duke model (the agents' smoothed success rates before
the first model), ``V = reference_price_sat × complexity / cost_weight`` is the value of a
success to the buyer, prices follow the seed formula. Exploration is Thompson sampling on the
champion's posterior (``policy.choose_thompson``: a uniform floor, a cap on what exploring may
cost the buyer) or ε-greedy (``policy.choose``), uniform before the first model; every decision
records its exact propensity, and how it was computed, for off-policy evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dukenet.agents.models import Agent
from dukenet.errors import BadRequest
from dukenet.learning.features import TaskFeatures
from dukenet.learning.policy import (
    THOMPSON_DRAWS,
    CostCapKind,
    RoutingDecision,
    canary_mix,
    choose,
    choose_thompson,
)
from dukenet.learning.router import P_MIN, DukeRouter
from dukenet.market.pricing import task_prices_sat

if TYPE_CHECKING:
    from dukenet.config import Settings


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
    n_eligible: int
    exploration: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the receipt as stored with the task; ``exploration`` says how the choice was
        drawn and how its propensity was computed (``method``: ``thompson``, ``epsilon`` or
        ``uniform``, and the method's settings)."""
        return {
            "agent_id": str(self.agent.id),
            "agent_name": self.agent.name,
            "price_sat": self.price_sat,
            "propensity": self.propensity,
            "model_version": self.model_version,
            "candidates": self.candidates,
            "n_eligible": self.n_eligible,
            "exploration": self.exploration,
        }


@dataclass(frozen=True)
class ThompsonExploration:
    """Settings of Thompson-sampling exploration (see ``policy.choose_thompson``).

    Attributes:
        floor: probability of a uniform choice among the explorable agents, in [0, 1].
        scale: multiplies the posterior standard deviation of every logit (1: as fitted).
        cost_cap: with ``cost_cap_kind="price"``, explore only agents priced at most
            ``(1 + cost_cap)`` x the greedy agent's price; with ``"expected"``, hold the expected
            price of the decision to at most that (None: no cap).
        cost_cap_kind: ``"price"`` or ``"expected"`` (``policy.choose_thompson``).
        n_draws: posterior draws per decision.
        budget: exploration budget, the most probability a decision puts on non-greedy agents
            (None: unbounded): the share of explored tasks, whatever the number of agents.
        top_k: only the ``top_k`` agents with the best posterior-mean utility take part in the
            posterior draws (None: all; the floor still reaches every agent).
    """

    floor: float = 0.05
    scale: float = 1.0
    cost_cap: float | None = 1.0
    cost_cap_kind: CostCapKind = "expected"
    n_draws: int = THOMPSON_DRAWS
    budget: float | None = None
    top_k: int | None = None

    def choose(
        self,
        logit_mean: np.ndarray,
        logit_sd: np.ndarray,
        prices_sat: np.ndarray,
        value_sat: float,
        rng: np.random.Generator,
    ) -> RoutingDecision:
        """One Thompson decision with these settings (``policy.choose_thompson``): ``(K,)``
        logit posterior means and standard deviations, prices in satoshis, value in satoshis.

        Raises:
            ValueError: as ``policy.choose_thompson``.
        """
        return choose_thompson(
            logit_mean,
            logit_sd,
            prices_sat,
            value_sat,
            rng=rng,
            floor=self.floor,
            scale=self.scale,
            cost_cap=self.cost_cap,
            cost_cap_kind=self.cost_cap_kind,
            n_draws=self.n_draws,
            budget=self.budget,
            top_k=self.top_k,
        )


def exploration_from_settings(settings: Settings) -> ThompsonExploration | None:
    """Return the Thompson settings of ``settings``, or None when ε-greedy is configured
    (``DUKENET_EXPLORATION=epsilon``; ``route`` then uses the ``exploration_epsilon`` family)."""
    if settings.exploration != "thompson":
        return None
    return ThompsonExploration(
        floor=settings.thompson_floor,
        scale=settings.thompson_scale,
        cost_cap=settings.exploration_cost_cap,
        cost_cap_kind=settings.exploration_cost_cap_kind,
        n_draws=settings.thompson_draws,
        budget=settings.exploration_budget,
        top_k=settings.thompson_top_k,
    )


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


RECEIPT_CANDIDATES = 10


def route(
    request: RoutingRequest,
    agents: Sequence[Agent],
    *,
    router: DukeRouter | None,
    model_version: int | None,
    reference_price_sat: int,
    epsilon: float,
    rng: np.random.Generator,
    top_k: int | None = None,
    floor: float = 0.0,
    thompson: ThompsonExploration | None = None,
    challenger: DukeRouter | None = None,
    challenger_version: int | None = None,
    canary_share: float = 0.0,
) -> RoutingReceipt:
    """Pick one of ``agents`` for the task (pure; the caller loads agents and the champion).

    With ``thompson`` set, exploration is Thompson sampling on the router's posterior
    (``policy.choose_thompson``); otherwise ``policy.choose``: ``epsilon`` among the ``top_k``
    best candidates plus a uniform ``floor``. Before the first model every choice is uniform.

    Canary: with ``thompson`` set, a ``challenger`` router and ``canary_share`` > 0, the
    challenger's own Thompson decision acts on that share of tasks (``policy.canary_mix``); the
    recorded propensities are the mixture's, and ``exploration["canary"]`` names the
    challenger's version, the share and whether it acted.

    The receipt lists the best ``RECEIPT_CANDIDATES`` candidates by expected utility (and the
    chosen one, if exploration picked another) and how many were eligible.

    Raises:
        BadRequest: no agent is eligible, or none is within ``max_price_sat``.
    """
    if not agents:
        raise BadRequest("no enabled agent can take this task")
    prices = task_prices_sat(
        np.array([a.base_price_sat for a in agents], dtype=np.int64),
        request.complexity,
        np.array([a.reputation_multiplier for a in agents], dtype=float),
    )
    if request.max_price_sat is not None:
        keep = np.flatnonzero(prices <= request.max_price_sat)
        if keep.size == 0:
            raise BadRequest(
                f"no agent is within max_price_sat={request.max_price_sat}; the cheapest asks "
                f"{int(prices.min())} sat"
            )
        eligible = [agents[int(i)] for i in keep]
        prices = prices[keep]
    else:
        eligible = list(agents)
    ids = [str(a.id) for a in eligible]
    value = value_sat(reference_price_sat, request.complexity, request.cost_weight)
    task = [TaskFeatures(request.description, request.complexity)]
    sd: np.ndarray | None = None
    decision: RoutingDecision
    if router is None:
        p = np.array([a.success_rate for a in eligible])
        decision = choose(p, prices.astype(float), value, epsilon=1.0, rng=rng)
        exploration: dict[str, Any] = {"method": "uniform", "propensity": "exact"}
    elif thompson is not None:
        mean, spread = router.predict_logit_features(router.featurize(task), ids)
        sd = spread[0]
        offered = prices.astype(float)
        decision = thompson.choose(mean[0], sd, offered, value, rng)
        if challenger is not None and canary_share > 0.0:
            c_mean, c_sd = challenger.predict_logit_features(challenger.featurize(task), ids)
            decision = canary_mix(
                decision,
                thompson.choose(c_mean[0], c_sd[0], offered, value, rng),
                canary_share,
                rng,
            )
        p = np.clip(1.0 / (1.0 + np.exp(-mean[0])), P_MIN, 1.0 - P_MIN)
        exploration = {"method": decision.method, **decision.details}
        if "canary" in exploration:
            exploration["canary"] = {**exploration["canary"], "model_version": challenger_version}
    else:
        p = router.predict_proba(task, ids)[0]
        decision = choose(
            p, prices.astype(float), value, epsilon=epsilon, rng=rng, top_k=top_k, floor=floor
        )
        exploration = {"method": decision.method, **decision.details}
    shown = list(np.argsort(-decision.utilities, kind="stable")[:RECEIPT_CANDIDATES])
    if decision.index not in shown:
        shown.append(decision.index)
    candidates = [
        {
            "agent_id": ids[i],
            "agent_name": eligible[i].name,
            "price_sat": int(prices[i]),
            "p_success": round(float(p[i]), 6),
            "utility_sat": _finite(float(decision.utilities[i])),
            "propensity": round(float(decision.propensities[i]), 6),
            **({} if sd is None else {"logit_sd": round(float(sd[i]), 4)}),
        }
        for i in shown
    ]
    return RoutingReceipt(
        agent=eligible[decision.index],
        price_sat=int(prices[decision.index]),
        propensity=decision.propensity,
        model_version=model_version,
        candidates=candidates,
        n_eligible=len(eligible),
        exploration=exploration,
    )


def shadow_decision(
    request: RoutingRequest,
    agents: Sequence[Agent],
    *,
    router: DukeRouter,
    model_version: int,
    reference_price_sat: int,
) -> dict[str, Any]:
    """Return what ``router`` would choose greedily for the task (shadow mode: nothing acts on
    it): ``{"model_version", "agent_id", "agent_name", "p_success", "price_sat"}``.

    Raises:
        BadRequest: as ``route``.
    """
    receipt = route(
        request,
        agents,
        router=router,
        model_version=model_version,
        reference_price_sat=reference_price_sat,
        epsilon=0.0,
        rng=np.random.default_rng(0),
    )
    chosen = next(c for c in receipt.candidates if c["agent_id"] == str(receipt.agent.id))
    return {
        "model_version": model_version,
        "agent_id": chosen["agent_id"],
        "agent_name": chosen["agent_name"],
        "p_success": chosen["p_success"],
        "price_sat": chosen["price_sat"],
    }


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None
