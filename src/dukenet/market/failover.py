"""Failover: where a task goes when its agent could not execute it (an error or a lost lease).

A retry goes to the best agent not yet tried, ranked by the expected utility the router computed
when the task was created (``P(success)·V − price``, the receipt's ``p_success``) at today's
prices; agents the receipt did not list rank after it by their smoothed success rate. The
buyer's budget holds for the agent that actually runs: its price must be within both the
task's ``max_price_sat`` and what the buyer already holds in escrow, so a failover never charges
more. A pinned task never fails over; excluded agents are never chosen. When no other agent
qualifies the task stays with the agent it has.

The choice is deterministic given the first choice and its failure, so an outcome logged after a
failover carries the original decision's propensity and is marked ``failover`` in the receipt;
off-policy evaluation may drop such rows.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from dukenet.agents.models import Agent
from dukenet.market.pricing import task_price_sat


@dataclass(frozen=True)
class FailoverChoice:
    """The agent a retry goes to and its price in satoshis."""

    agent: Agent
    price_sat: int


def choose_failover(
    agents: Sequence[Agent],
    *,
    candidates: Sequence[dict[str, Any]],
    tried: Collection[uuid.UUID],
    excluded: Collection[uuid.UUID],
    complexity: int,
    value_sat: float,
    budget_sat: int,
) -> FailoverChoice | None:
    """Return the best untried, non-excluded agent within ``budget_sat``, or None.

    Args:
        agents: the enabled agents that can take the task now.
        candidates: the routing receipt's candidates (``agent_id``, ``p_success``).
        tried: agents that already had an attempt at the task.
        excluded: agents the buyer ruled out.
        complexity: the task's complexity (1-10), for today's price.
        value_sat: the buyer's value of a success (``routing.value_sat``; ``inf`` ranks by
            predicted success, then price).
        budget_sat: the most the agent may ask: ``min(max_price_sat, escrow_sat)``.
    """
    predicted = {str(c["agent_id"]): float(c["p_success"]) for c in candidates}
    best: tuple[tuple[float, ...], FailoverChoice] | None = None
    for agent in agents:
        if agent.id in tried or agent.id in excluded:
            continue
        price = task_price_sat(agent.base_price_sat, complexity, agent.reputation_multiplier)
        if price > budget_sat:
            continue
        listed = str(agent.id) in predicted
        p = predicted[str(agent.id)] if listed else agent.success_rate
        utility = p if math.isinf(value_sat) else p * value_sat - price
        key = (1.0 if listed else 0.0, utility, -float(price))
        if best is None or key > best[0]:
            best = (key, FailoverChoice(agent, price))
    return None if best is None else best[1]
