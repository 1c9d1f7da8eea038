"""Routing policy: pick the agent with the highest expected utility, exploring with epsilon-greedy.

Expected utility of candidate ``a`` in satoshis:
``U_a = P(success | task, a) * value_sat - price_sat_a``. The caller computes
``value_sat = reference_price_sat * complexity / cost_weight`` (reference price 100,000 sat): a
buyer with ``cost_weight`` w gives up w success probability to save one reference price.
``value_sat = inf`` means "quality at any price": rank by P(success), then by price.

Every decision carries the exact probability the policy had of making it, so outcomes logged with it
support off-policy evaluation of any later router by inverse propensity scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of one routing choice.

    Attributes:
        index: chosen position in the candidate list.
        propensity: exact probability the policy had of choosing ``index`` (for IPS), in (0, 1].
        utilities: (n_candidates,) expected utility in satoshis (``+inf`` if p > 0 and value inf).
        greedy_index: the utility-maximising position (ties: lower price, then lower index).
    """

    index: int
    propensity: float
    utilities: np.ndarray
    greedy_index: int

    @property
    def explored(self) -> bool:
        """Whether the choice differs from the greedy one."""
        return self.index != self.greedy_index


def expected_utility(p_success: np.ndarray, prices_sat: np.ndarray, value_sat: float) -> np.ndarray:
    """Return ``p * value_sat - price`` per candidate, shape (n,), satoshis (float64).

    With ``value_sat = inf`` a candidate with p > 0 has utility ``+inf``, one with p == 0
    ``-price``.

    Raises:
        ValueError: on shape mismatch, empty input, NaN, p outside [0, 1], negative price or value.
    """
    p, prices = _validate(p_success, prices_sat, value_sat)
    if math.isinf(value_sat):
        return np.asarray(np.where(p > 0, math.inf, -prices), dtype=np.float64)
    return np.asarray(p * value_sat - prices, dtype=np.float64)


def choose(
    p_success: np.ndarray,
    prices_sat: np.ndarray,
    value_sat: float,
    *,
    epsilon: float,
    rng: np.random.Generator,
    top_k: int | None = None,
    floor: float = 0.0,
) -> RoutingDecision:
    """Choose a candidate: greedy, or explore with probability ``epsilon + floor``.

    ``epsilon`` explores uniformly among the ``top_k`` candidates by expected utility (all ``K``
    when ``top_k`` is None): the contenders whose ranking the data must settle. ``floor``
    explores uniformly among all candidates, so no agent starves. The propensity is exact:
    ``P(a) = (1 - epsilon - floor) [a = greedy] + epsilon / m [a in top m] + floor / K``.

    Args:
        p_success: (K,) predicted success probabilities.
        prices_sat: (K,) prices in satoshis.
        value_sat: value of a success in satoshis (``inf``: rank by p, then price).
        epsilon: exploration rate among the top candidates, in [0, 1].
        rng: the random generator (seeded by the caller); two draws are consumed per call.
        top_k: how many of the best candidates ``epsilon`` explores (None: all).
        floor: exploration rate over all candidates; ``epsilon + floor`` must be at most 1.

    Raises:
        ValueError: on empty candidates, shape mismatch, NaN, rates outside [0, 1], or
            ``top_k`` < 1.
    """
    if not 0.0 <= epsilon <= 1.0 or math.isnan(epsilon):
        raise ValueError("epsilon must be in [0, 1]")
    if not 0.0 <= floor <= 1.0 - epsilon or math.isnan(floor):
        raise ValueError("floor must be in [0, 1 - epsilon]")
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be at least 1")
    p, prices = _validate(p_success, prices_sat, value_sat)
    utilities = expected_utility(p, prices, value_sat)
    k = p.size
    if math.isinf(value_sat):
        order = np.lexsort((np.arange(k), prices, -p))
    else:
        order = np.lexsort((np.arange(k), prices, -utilities))
    greedy = int(order[0])
    m = k if top_k is None else min(top_k, k)
    u = rng.random()
    draw = rng.random()
    if u < floor:
        index = int(draw * k)
    elif u < floor + epsilon:
        index = int(order[int(draw * m)])
    else:
        index = greedy
    in_top = bool(np.any(order[:m] == index))
    propensity = floor / k + (epsilon / m if in_top else 0.0)
    if index == greedy:
        propensity += 1.0 - epsilon - floor
    return RoutingDecision(
        index=index, propensity=float(propensity), utilities=utilities, greedy_index=greedy
    )


def _validate(
    p_success: np.ndarray, prices_sat: np.ndarray, value_sat: float
) -> tuple[np.ndarray, np.ndarray]:
    """Check inputs and return them as 1-D float64 arrays."""
    p = np.asarray(p_success, dtype=np.float64)
    prices = np.asarray(prices_sat, dtype=np.float64)
    if p.ndim != 1 or prices.ndim != 1:
        raise ValueError("p_success and prices_sat must be 1-D")
    if p.size == 0:
        raise ValueError("no candidates")
    if p.shape != prices.shape:
        raise ValueError(f"shape mismatch: p_success {p.shape} vs prices_sat {prices.shape}")
    if np.isnan(p).any() or np.isnan(prices).any() or math.isnan(value_sat):
        raise ValueError("NaN in p_success, prices_sat or value_sat")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("p_success must be in [0, 1]")
    if (prices < 0).any() or value_sat < 0:
        raise ValueError("prices and value must be non-negative")
    return p, prices
