"""Routing policy: pick the agent with the highest expected utility, exploring by Thompson sampling
(``choose_thompson``, the default) or epsilon-greedy (``choose``).

Expected utility of candidate ``a`` in satoshis:
``U_a = P(success | task, a) * value_sat - price_sat_a``. The caller computes
``value_sat = reference_price_sat * complexity / cost_weight`` (reference price 100,000 sat): a
buyer with ``cost_weight`` w gives up w success probability to save one reference price.
``value_sat = inf`` means "quality at any price": rank by P(success), then by price.

Every decision carries the exact probability the policy had of making it, so outcomes logged with it
support off-policy evaluation of any later router by inverse propensity scoring.

Thompson sampling (Thompson 1933; Chapelle & Li 2011, "An empirical evaluation of Thompson
sampling", for the logistic-Laplace variant used here; Russo et al. 2018, "A tutorial on Thompson
sampling"): each candidate's logit of success is drawn from the router's Gaussian posterior
(``DukeRouter.predict_logit_features``), and the candidate with the highest *sampled* utility
``sigmoid(logit) * value_sat - price`` is chosen. Candidates the router is unsure of win some draws
in proportion to the chance that they really are best, so exploration goes where it can pay and
fades as evidence accumulates, with no schedule to tune. Two guards sit on top:

- a uniform *floor*: with probability ``floor`` the choice is uniform over the explorable set, so
  every agent (a new one first of all) keeps some traffic and every propensity stays positive;
- a *cost cap* of one of two kinds (``cost_cap_kind``):

  - ``"price"``: only agents whose price is at most ``(1 + cost_cap)`` times the greedy agent's
    price may be explored, so no single decision charges a buyer more than that fraction above
    what the greedy choice would have cost. Agents above it get propensity 0 on that task, so they
    are never learned about there and cannot be evaluated off-policy on it: a dear agent (the best
    model, often 10x the price of a good cheap one) is never tried where a cheap one is greedy.
  - ``"expected"``: every agent stays explorable, but the decision's *expected* price is held to
    at most ``(1 + cost_cap)`` times the greedy price by mixing the Thompson distribution ``pi``
    with the greedy choice: ``pi' = alpha * pi + (1 - alpha) * [greedy]``, with ``alpha`` the
    largest value in [0, 1] for which ``sum(pi' * price) <= (1 + cost_cap) * price_greedy``. Over
    many tasks a buyer pays at most that fraction above greedy routing on average (the buyer's
    ``max_price_sat`` still bounds every single task), and every propensity stays positive where
    the floor is positive, so every agent can be learned about and evaluated off-policy anywhere.

Two more bounds keep exploration's cost independent of the number of agents. With many agents whose
posteriors are wide (a new market, or one agent among 50 seen twice), the maximum of their draws
beats the greedy agent's on most tasks, so plain Thompson sampling explores almost always (measured:
the model's own best agent chosen on 16-26% of tasks with 55 agents, against 77-87% with two).
``top_k`` lets only the ``k`` candidates with the best posterior-mean utility take part in the draws
(top-k Thompson sampling, as in the combinatorial and ranking bandit literature, e.g. Komiyama,
Honda & Nakagawa 2015; the floor still reaches every agent), and an exploration ``budget`` caps the
probability of a non-greedy choice by the same greedy mixture as the expected cost cap: ``alpha =
min(alpha_cost, budget / (1 - pi[greedy]))``. This is the "exploration budget" of
budgeted/conservative bandits (Wu et al. 2016, "Conservative contextual linear bandits"): the share
of explored tasks, and with it what exploring costs buyers, is a configured number, whatever the
number of agents.

The probability that a draw picks each agent has no closed form, so each decision takes
``n_draws`` posterior draws, counts how often each agent wins, and routes by one of the draws
picked uniformly at random (or by the floor). Given the decision's draws, the probability of every
agent is then *exactly* ``floor / m + (1 - floor) * wins / n_draws`` (``m`` explorable agents),
which is what the receipt records. That propensity conditions only on the policy's own random
draws, which are independent of the outcome, so inverse propensity scores built on it stay
unbiased; the chosen agent's propensity is at least ``floor / m`` and at least
``(1 - floor) / n_draws`` when a draw chose it.

Draws are truncated at ``TRUNCATE_SD`` standard deviations. That changes the posterior by a
negligible mass and makes an exact shortcut possible with many agents: a candidate whose best
possible draw cannot beat the worst possible draw of the leader never wins a draw, so only the
others are sampled (with 1,000 agents this keeps a decision well under a millisecond or two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dukenet.learning.router import P_MIN

CostCapKind = Literal["price", "expected"]
"""How ``choose_thompson`` applies its cost cap: per decision's price, or to its expected price."""

COST_CAP_KINDS: tuple[str, ...] = ("price", "expected")

THOMPSON_DRAWS = 256
"""Default posterior draws per Thompson decision (propensity resolution 1/256)."""

TRUNCATE_SD = 4.0
"""Posterior draws are truncated at this many standard deviations (3e-5 of the mass per tail)."""


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of one routing choice.

    Attributes:
        index: chosen position in the candidate list.
        propensity: exact probability the policy had of choosing ``index`` (for IPS), in (0, 1].
        utilities: (n_candidates,) expected utility in satoshis (``+inf`` if p > 0 and value inf).
        greedy_index: the utility-maximising position (ties: lower price, then lower index).
        propensities: (n_candidates,) the probability the policy gave every candidate (sums to 1;
            ``propensities[index] == propensity``).
        method: ``"epsilon"`` or ``"thompson"``.
        details: how the propensities were computed, JSON-ready (stored in the receipt).
    """

    index: int
    propensity: float
    utilities: np.ndarray
    greedy_index: int
    propensities: np.ndarray
    method: str = "epsilon"
    details: dict[str, object] = field(default_factory=dict)

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
    order = _greedy_order(p, prices, utilities, value_sat)
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
    propensities = np.full(k, floor / k)
    propensities[order[:m]] += epsilon / m
    propensities[greedy] += 1.0 - epsilon - floor
    return RoutingDecision(
        index=index,
        propensity=float(propensities[index]),
        utilities=utilities,
        greedy_index=greedy,
        propensities=propensities,
        method="epsilon",
        details={"epsilon": epsilon, "top_k": m, "floor": floor, "propensity": "exact"},
    )


def choose_thompson(
    logit_mean: np.ndarray,
    logit_sd: np.ndarray,
    prices_sat: np.ndarray,
    value_sat: float,
    *,
    rng: np.random.Generator,
    floor: float = 0.0,
    scale: float = 1.0,
    cost_cap: float | None = None,
    cost_cap_kind: CostCapKind = "expected",
    n_draws: int = THOMPSON_DRAWS,
    budget: float | None = None,
    top_k: int | None = None,
) -> RoutingDecision:
    """Choose a candidate by Thompson sampling on the posterior of its success logit.

    See the module docstring for the scheme, the floor, the cost cap and why the propensities are
    exact. The greedy choice (the reference for the cost cap and for ``explored``) maximises the
    utility at the posterior mean ``p = sigmoid(logit_mean)`` (clipped to ``[P_MIN, 1 - P_MIN]``),
    as ``choose`` with ``epsilon = 0``. With ``scale = 0`` and ``floor = 0`` the policy is greedy.

    Args:
        logit_mean: (K,) posterior mean of each candidate's logit of success.
        logit_sd: (K,) posterior standard deviation of those logits (>= 0).
        prices_sat: (K,) prices in satoshis.
        value_sat: value of a success in satoshis (``inf``: rank by sampled p).
        rng: the random generator (seeded by the caller).
        floor: probability of a uniform choice over the explorable candidates, in [0, 1].
        scale: multiplies ``logit_sd`` (1: the posterior as fitted; 0: no sampling).
        cost_cap: with ``cost_cap_kind="price"``, explore only candidates priced at most
            ``(1 + cost_cap)`` times the greedy one; with ``"expected"``, keep the decision's
            expected price at most that (None: no cap).
        cost_cap_kind: ``"expected"`` (the default, as the product's ``Settings``) or ``"price"``
            (see the module docstring).
        n_draws: posterior draws per decision.
        budget: exploration budget, the most probability the decision may put on non-greedy
            candidates, in [0, 1] (None: no budget). Applied like the expected cost cap, by
            mixing with the greedy choice, so the share of explored tasks is bounded whatever the
            number of candidates.
        top_k: only the ``top_k`` candidates with the highest posterior-mean utility take part in
            the draws (the floor still covers every explorable candidate); None: all of them.

    Raises:
        ValueError: on empty candidates, shape mismatch, NaN, negative or non-finite ``logit_sd``,
            ``floor`` outside [0, 1], negative ``scale`` or ``cost_cap``, an unknown
            ``cost_cap_kind``, ``n_draws`` < 1, ``budget`` outside [0, 1] or ``top_k`` < 1.
    """
    mean = np.asarray(logit_mean, dtype=np.float64)
    sd = np.asarray(logit_sd, dtype=np.float64)
    if mean.shape != sd.shape or mean.ndim != 1:
        raise ValueError("logit_mean and logit_sd must be 1-D arrays of one shape")
    if not np.isfinite(mean).all() or not np.isfinite(sd).all() or (sd < 0).any():
        raise ValueError("logit_mean must be finite and logit_sd finite and non-negative")
    if not 0.0 <= floor <= 1.0 or math.isnan(floor):
        raise ValueError("floor must be in [0, 1]")
    if not scale >= 0.0 or math.isinf(scale):
        raise ValueError("scale must be finite and non-negative")
    if cost_cap is not None and not cost_cap >= 0.0:
        raise ValueError("cost_cap must be non-negative")
    if cost_cap_kind not in COST_CAP_KINDS:
        raise ValueError(f"cost_cap_kind must be one of {COST_CAP_KINDS}")
    if n_draws < 1:
        raise ValueError("n_draws must be at least 1")
    if budget is not None and not 0.0 <= budget <= 1.0:
        raise ValueError("budget must be in [0, 1]")
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be at least 1")
    p = np.clip(_sigmoid(mean), P_MIN, 1.0 - P_MIN)
    p, prices = _validate(p, prices_sat, value_sat)
    utilities = expected_utility(p, prices, value_sat)
    k = p.size
    order = _greedy_order(p, prices, utilities, value_sat)
    greedy = int(order[0])
    if cost_cap is None or cost_cap_kind == "expected":
        explorable = np.arange(k)
    else:
        explorable = np.flatnonzero(prices <= prices[greedy] * (1.0 + cost_cap))
    m = explorable.size
    greedy_at = int(np.searchsorted(explorable, greedy))
    spread = scale * sd[explorable]
    drawn = np.ones(m, dtype=bool)
    if top_k is not None and top_k < m:
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k)
        drawn = rank[explorable] <= np.sort(rank[explorable])[top_k - 1]
    if m == 1 or not spread[drawn].any():
        winners = np.full(n_draws, greedy_at, dtype=np.int64)
    else:
        # Only candidates whose best draw can beat the leader's worst draw may ever win.
        top = _sampled_utility(
            mean[explorable] + TRUNCATE_SD * spread, prices, explorable, value_sat
        )
        low = _sampled_utility(
            mean[explorable] - TRUNCATE_SD * spread, prices, explorable, value_sat
        )
        contenders = np.flatnonzero(drawn & (top >= low[drawn].max()))
        z = np.clip(rng.standard_normal((n_draws, contenders.size)), -TRUNCATE_SD, TRUNCATE_SD)
        logits = mean[explorable[contenders]] + spread[contenders] * z
        sampled = _sampled_utility(logits, prices, explorable[contenders], value_sat)
        winners = contenders[np.argmax(sampled, axis=1)]
    share = np.bincount(winners, minlength=m) / n_draws
    within = floor / m + (1.0 - floor) * share
    uniform = rng.random() < floor
    at = int(rng.integers(m)) if uniform else int(winners[int(rng.integers(n_draws))])
    propensities = np.zeros(k)
    propensities[explorable] = within
    index = int(explorable[at])
    explore_share = 1.0
    if cost_cap is not None and cost_cap_kind == "expected":
        explore_share = _expected_price_share(propensities, prices, greedy, cost_cap)
    if budget is not None and propensities[greedy] < 1.0:
        explore_share = min(explore_share, budget / (1.0 - float(propensities[greedy])))
    if explore_share < 1.0:
        propensities *= explore_share
        propensities[greedy] += 1.0 - explore_share
        if rng.random() >= explore_share:
            index = greedy
    return RoutingDecision(
        index=index,
        propensity=float(propensities[index]),
        utilities=utilities,
        greedy_index=greedy,
        propensities=propensities,
        method="thompson",
        details={
            "floor": floor,
            "scale": scale,
            "cost_cap": cost_cap,
            "cost_cap_kind": cost_cap_kind,
            "explore_share": explore_share,
            "budget": budget,
            "top_k": top_k,
            "n_draws": n_draws,
            "n_explorable": m,
            "propensity": "exact given the decision's posterior draws",
        },
    )


def canary_mix(
    champion: RoutingDecision,
    challenger: RoutingDecision,
    share: float,
    rng: np.random.Generator,
) -> RoutingDecision:
    """Route a ``share`` of tasks by the challenger (a canary, or A/B, split) with exact
    propensities.

    Both decisions are made on the same candidates, each by its own policy and draws. With
    probability ``share`` the challenger's choice acts, otherwise the champion's, so every
    candidate's probability is ``(1 - share) * champion.propensities + share *
    challenger.propensities``, which is what the returned decision records. Logged this way, the
    champion's and the challenger's choices both get traffic, so the promotion gate's off-policy
    estimates of *both* policies have support where they disagree (without a canary, the
    challenger's choices are seen only when exploration happens to make them). Utilities and the
    greedy choice are the champion's; ``details["canary"]`` says who acted. One draw of ``rng``
    is consumed.

    Raises:
        ValueError: ``share`` outside [0, 1] or the decisions have different candidate counts.
    """
    if not 0.0 <= share <= 1.0 or math.isnan(share):
        raise ValueError("share must be in [0, 1]")
    if champion.propensities.shape != challenger.propensities.shape:
        raise ValueError("the two decisions must be over the same candidates")
    acted = rng.random() < share
    index = challenger.index if acted else champion.index
    propensities = (1.0 - share) * champion.propensities + share * challenger.propensities
    return RoutingDecision(
        index=index,
        propensity=float(propensities[index]),
        utilities=champion.utilities,
        greedy_index=champion.greedy_index,
        propensities=propensities,
        method=champion.method,
        details={
            **champion.details,
            "canary": {"share": share, "acted": acted},
        },
    )


def _expected_price_share(
    propensities: np.ndarray, prices: np.ndarray, greedy: int, cost_cap: float
) -> float:
    """Largest ``alpha`` in [0, 1] such that following ``propensities`` with probability ``alpha``
    (and the greedy choice otherwise) has an expected price of at most ``(1 + cost_cap)`` times
    the greedy price."""
    expected = float(propensities @ prices)
    limit = (1.0 + cost_cap) * float(prices[greedy])
    if expected <= limit:
        return 1.0
    return max(0.0, min(1.0, (limit - float(prices[greedy])) / (expected - float(prices[greedy]))))


def _sampled_utility(
    logits: np.ndarray, prices: np.ndarray, columns: np.ndarray, value_sat: float
) -> np.ndarray:
    """Utility of sampled logits (any leading shape, last axis = ``columns``); sampled p when
    ``value_sat`` is inf (ranking by p)."""
    p = _sigmoid(logits)
    if math.isinf(value_sat):
        return p
    return np.asarray(p * value_sat - prices[columns], dtype=np.float64)


def greedy_index(p_success: np.ndarray, prices_sat: np.ndarray, value_sat: float) -> int:
    """Return the position ``choose`` picks with no exploration: the highest expected utility
    (highest P(success) when ``value_sat`` is inf), then the lower price, then the lower position.

    Unvalidated and cheap, for evaluating a greedy policy over many logged decisions; inputs as in
    ``expected_utility``.
    """
    p = np.asarray(p_success, dtype=np.float64)
    prices = np.asarray(prices_sat, dtype=np.float64)
    if math.isinf(value_sat):
        return int(np.lexsort((np.arange(p.size), prices, -p))[0])
    return int(np.lexsort((np.arange(p.size), prices, -(p * value_sat - prices)))[0])


def _greedy_order(
    p: np.ndarray, prices: np.ndarray, utilities: np.ndarray, value_sat: float
) -> np.ndarray:
    """Candidates best first: by utility (p when ``value_sat`` is inf), then price, then index."""
    k = p.size
    if math.isinf(value_sat):
        return np.lexsort((np.arange(k), prices, -p))
    return np.lexsort((np.arange(k), prices, -utilities))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, elementwise, without overflow warnings."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


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
