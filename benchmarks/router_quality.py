"""Offline simulation of DukeNET's learning loop on RouterBench; prints figures, asserts nothing.

The loop, as the marketplace runs it:

1. RouterBench train prompts arrive in a seeded random order, each with a complexity
   (``complexity_of``).
2. Every agent (one per model) asks
   ``price_sat = base_price_sat * complexity * reputation multiplier``, with
   ``base_price_sat = max(1, round(mean recorded cost USD * 1e7))`` and a multiplier of 1.2 / 1.5 /
   1.8 / 2.0 for a Beta(2, 2)-smoothed success rate over the agent's last 100 outcomes below 0.70 /
   >= 0.70 / >= 0.85 / >= 0.95.
3. The champion router (uniform random before there is one) routes with the product's exploration
   (``value_sat = 100,000 * complexity / cost_weight``): Thompson sampling on the router's Laplace
   posterior (``policy.choose_thompson``: ``--floor``, ``--scale``, ``--cost-cap``, ``--draws``)
   or epsilon-greedy (``policy.choose``: ``--epsilon`` among the ``--top-k`` best plus
   ``--eps-floor``). Only the chosen agent's recorded outcome is seen (bandit feedback).
4. Every 100 outcomes a challenger is fitted on the train side of ``held_out_split`` of all outcomes
   seen and promoted by ``--promotion``: ``policy`` (the product's gate,
   ``evaluation.policy_promotion_decision``: the challenger's greedy policy must beat the
   champion's off-policy, doubly robust on the logged propensities of the held-out decisions,
   beyond a 95% paired bootstrap interval), ``brier`` (its Brier score on its held-out rows beats
   the champion's on them), ``not-worse`` (unless worse beyond noise) or ``always`` (newest
   wins).
5. Each version's greedy policy is scored on the RouterBench *test* prompts with full information.

Figures (all on the test prompts, full information):

- success rate and USD per 1,000 prompts at the serving ``--cost-weight``;
- **AIQ** (RouterBench, Hu et al. 2024, "RouterBench: A Benchmark for Multi-LLM Routing System"):
  the area under the *non-decreasing convex hull* of a policy family's (cost, quality) points,
  divided by the cost range. Normalisation used here: cost runs over ``[c_lo, c_hi]`` = the
  cheapest and the dearest single agent's cost per 1,000 test prompts, so AIQ is a mean success
  rate over that range (same range for every family). The hull is extended flat to the right (a
  family can always be run at a higher budget at no loss) and counts 0 left of the family's
  cheapest point (that budget is out of its reach). Families: Duke's greedy policy swept over
  ``cost_weight`` in ``COST_WEIGHT_GRID`` at serving time (0 = quality at any price); the single
  agents (their hull = randomised mixtures of two agents, RouterBench's "zero router"); the oracle
  swept over a price of cost (per prompt ``argmax success - lambda * cost``);
- **PGR / APGR** (RouteLLM, Ong et al. 2024): performance gap recovered
  ``(quality - weak) / (strong - weak)`` with *strong* = the best single agent and *weak* = the
  cheapest one; PGR at the serving knob, APGR = the PGR of the mean over the cost range, i.e.
  ``(AIQ - weak) / (strong - weak)``;
- the learning curve: each version's success, cost and AIQ by outcomes seen;
- the targets of the issue: AIQ above the single agents' hull, and at one knob setting of the last
  promoted version at least 98% of the best single agent's success at no more than 40% of its
  cost (the knob setting is read off the test sweep: it shows the curve reaches the point; whether
  the serving default lands on it is printed beside it).

Settings tried on 24 seeds (``--seeds 0 .. 23 --exploration thompson --quiet``; ``--promotion
policy``, cw = 0.1, the knob swept 30 per decade; AIQ of the single agents' hull 0.8178;
full-information Duke 0.8518 and it meets 98%/40% at cw = 0.0858: 0.860 at $2.00/1k; "gated" =
the last promoted version, "newest" = the last fitted one; "paired" = the per-seed difference
from the first row, mean +- standard error):

========================================  =========  ==========  =======  ======  =============
cost cap, gate                            gated AIQ  above hull  98%/40%  newest  paired
========================================  =========  ==========  =======  ======  =============
price cap 1.0, DR uncapped (old default)  0.7966     6/24        0/24     0.8169  -
expected cap 1.0, DR uncapped             0.8030     11/24       1/24     0.8304  +0.006+-0.012
expected cap 1.0, DR weight clip 10       0.8120     14/24       1/24     0.8307  +0.015+-0.011
expected cap 1.0, DR weight clip 5 (dflt) 0.8216     16/24       1/24     0.8320  +0.025+-0.008
========================================  =========  ==========  =======  ======  =============

Also measured (seeds 0-11 unless said): no cost cap at all, DR uncapped 0.8182 (8/12; newest
0.8353); a reward model shared by both policies (``--reward-model mean``) -0.013 +- 0.011 against
its own-model counterpart, ``challenger`` -0.004 +- 0.005; a canary split of 0.2
(``--canary-share 0.2``, 8 seeds) -0.020 +- 0.020, so the product ships it at 0. The uncapped DR
gate's intervals stayed about +-0.2 wide over 445 held-out decisions (weights up to 1/0.005), so
on 5 of 24 seeds the first model (trained on 80 outcomes) was never replaced; capping the weights
at 5 bounds that variance at the price of a bias toward each policy's reward model.

The gate's power. Every champion/challenger comparison is also scored with full information on
the test prompts (the summary's "gate" line: the true gain is the difference of the two greedy
policies' mean ``success - price / V`` at the serving knob). With the defaults, over 24 seeds,
399 of 527 challengers were truly better (median gain +0.022); the gate promoted 29, 25 of them
truly better (mean gain +0.058), and its 95% interval's median half-width was 0.079, three and a
half times the typical gain, so most better challengers wait. Attempts to trade that off, 24
seeds each, paired against the defaults' row above:

=================================================  =========  ==========  =======  =============
gate variant (flag)                                gated AIQ  above hull  98%/40%  paired
=================================================  =========  ==========  =======  =============
no gate: the newest always serves (``always``)     0.8334     22/24       3/24     +0.012+-0.005
one-sided 95% bound (``--gate-test one-sided``)    0.8224     18/24       1/24     +0.001+-0.003
one-sided 90% (``--gate-level 0.9``)               0.8208     15/24       2/24     -0.001+-0.004
one-sided 80% (``--gate-level 0.8``)               0.8212     17/24       0/24     -0.001+-0.004
DR weight clip 2 (``--weight-clip 2``)             0.8177     15/24       2/24     -0.004+-0.005
DR weight clip 1                                   0.7996     10/24       2/24     -0.022+-0.009
value averaged over cw x 0.1, 0.3, 1, 3, 10        0.8183     16/24       2/24     -0.003+-0.005
value averaged over cw x 0.3, 1, 3                 0.8110     15/24       2/24     -0.011+-0.008
Thompson floor 0.2 (``--floor 0.2``)               0.8126     10/24       0/24     -0.009+-0.006
Thompson floor 0.4                                 0.8095     7/24        0/24     -0.012+-0.006
shadow re-test (``--shadow-evidence``)             0.8163     15/24       1/24     -0.005+-0.005
=================================================  =========  ==========  =======  =============

(``--gate-knobs``: the gate compares the two policies' value averaged over those multiples of the
cost weight, the way AIQ averages over the knob. ``--shadow-evidence``: a rejected challenger
stays in shadow until the outcomes seen have doubled since its fit, then is tested once more on
the held-out decisions plus every decision logged since its fit, about 2.5 times the evidence of
the round's own test; seed 2 moves above the hull, seeds 8 and 9 stay below it.) A lower bar
promotes more (64 promotions at 80%, 44 truly better) but not better versions for the whole
curve, and no estimator change narrowed the interval much (a shared reward model: half-width
0.081 against 0.077 on 8 seeds). Also tried and not kept (a prototype, 22-24 seeds): the first
model must beat the logging policy's on-policy value beyond noise instead of the base rate's
Brier score, -0.005 +- 0.005.
For scale: routing all 2,225 train prompts uniformly at random (one agent each, no loop) and
fitting once gives AIQ 0.835 (8 seeds; 98%/40% on 2), about what the loop's newest version
reaches (0.832), and two random agents per prompt no more (0.838 on 6 seeds); so the loop's data
is worth about as much as uniform exploration at a far better online success (0.73 against 0.70),
more bandit outcomes of the same kind do not close the gap to full information (0.852), the
hyperparameters are not the limit either (C 1 or 10, prior_strength 1, C_shared 0.3 or
agent_n_components 16: uniform-logging AIQ 0.834-0.836 on the same 8 seeds), and what separates
the served version from the newest is the held-out evidence the gate has.

How far the 98%/40% target is from reach (printed under "target" and as the "category routing"
row). It asks for 817 of the 953 test prompts solved (98% of gpt-4's 0.874) at <= $2.01 per 1k.
One binomial standard error of a success rate there is 10.8 prompts. A router that knows each
prompt's family exactly and routes it to the family's best agent at the price (full information
on train: arc-challenge to Yi-34B, mbpp to gpt-3.5, winogrande to gpt-4) solves 816 at $1.64 and
never reaches the point at any price; its AIQ, 0.8508, is that of full-information Duke
(0.8514), which meets the target by 3 prompts (820 at $2.00) only because it tells some prompts of
one family apart. From bandit data the same family router (uniform logging of the train prompts,
Beta(1, 1)-smoothed family rates) reaches AIQ 0.838 on 8 seeds and 98%/40% on none: what bandit
Duke reaches (0.832-0.835) is about all the family-level signal those 2,225 outcomes hold, and
the target needs within-family signal worth a few prompts, well inside the test set's noise. The
sentence-embedding featurizer (``--config '{"features": "embedding"}'``) does not help under
bandit feedback: gated AIQ -0.013 +- 0.008 paired against hashing (20 seeds; 11/20 above the
hull against 15/20), with full information it ties (``benchmarks/featurizers.py``).

Issue #16 (the gate and exploration redesigned on two markets; ``--dataset mmlu-pro`` is the
packaged 7,000-question x 31-model subset, ``--max-train 1500 --retrain-growth 1.4`` to fit the
machine: retrain at 100 outcomes and then whenever they grew 1.4x; RouterBench every 100 as the
product; seeds 0-9, 95% t-intervals across seeds; AIQ of the served champion on the test prompts):

==========================================  ===============  ===============  ================
gate, exploration                           MMLU-Pro AIQ     RouterBench AIQ  online success
==========================================  ===============  ===============  ================
superiority (old gate), no budget           0.6647+-0.0342   0.8216 (24 sds)  MMLU 0.556
guardrail, no budget                        0.6818+-0.0175   0.8389+-0.0066   0.577 / 0.776
guardrail, budget 0.1 (the new defaults)    0.6900+-0.0194   0.8309+-0.0078   0.621 / 0.803
==========================================  ===============  ===============  ================

Paired per seed: guardrail - superiority on MMLU-Pro +0.017+-0.035 (promotions 8.0 against 2.3
of 11 versions; the old gate kept the first model on 2 of 10 seeds); budget 0.1 - none: AIQ
+0.008+-0.032 (MMLU-Pro) and -0.008+-0.011 (RouterBench), online success after the first 300
tasks +0.044+-0.037 and +0.026+-0.020, greedy share 0.84 / 0.86 against 0.42 / 0.58. The
RouterBench row of the old gate is the 24-seed figure above. Top-k Thompson (k = 3 or 5) was worse
on MMLU-Pro (2 seeds, AIQ 0.63-0.68 against 0.69-0.71) and is off by default. The price prior
(``--config '{"price_prior": true}'``: each agent's skill shrunk toward a fitted slope times its
standardised log list price, so a rarely explored dear agent starts where dear agents stand) is
off by default too: paired against the defaults, MMLU-Pro AIQ -0.012+-0.033 (10 seeds; online
success +0.033+-0.027, at a higher online spend) and RouterBench AIQ -0.014+-0.034 (6 seeds; one
seed fell to 0.765); the defaults reproduced 0.6900+-0.0194 and 0.8320+-0.0100 in the same run.
Regularisation probed on MMLU-Pro in the same session, paired against the defaults: ``C`` 1.0
instead of 3.0 +0.003+-0.023 (10 seeds), ``agent_n_components`` 4 instead of 8 +0.018+-0.041 (5
seeds): within noise, defaults kept.
References on MMLU-Pro's test prompts: gpt-4o 0.727 at $6.51/1k, gemini-1.5-flash-002 0.651 at
$0.04, hull 0.7167, full-information Duke (1,500 train prompts x 31 agents) 0.7348, TF-IDF kNN
0.6942, oracle 0.9448. Not met: the champion after 1,500 prompts reaches 0.683+-0.024 success, below
gpt-4o's 0.727, and AIQ 0.690 is below the hull (0.717) and level with the kNN reference; the online
market stays below the single agents' hull (0.621 against 0.699 at its cost).

Run: ``python benchmarks/router_quality.py`` (seeds 0, 1, 2, Thompson and epsilon; about 2-3 min
on one core); ``--exploration thompson`` (or ``epsilon``) runs one; ``--quiet`` prints summaries;
``--config '{"C": 1.0}'`` overrides ``RouterConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from dukenet.config import Settings
from dukenet.learning.evaluation import (
    LoggedDecision,
    PolicyResult,
    PolicyTerms,
    PromotionDecision,
    PromotionGate,
    best_single_agent,
    brier_difference_interval,
    classifier_metrics,
    evaluate_full_information,
    greedy_policy_evaluation,
    held_out_split,
    policy_promotion_decision,
    random_routing_result,
    single_agent_results,
)
from dukenet.learning.features import TaskFeatures
from dukenet.learning.policy import (
    COST_CAP_KINDS,
    THOMPSON_DRAWS,
    RoutingDecision,
    canary_mix,
    choose,
)
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.routerbench import (
    FullInfoTable,
    full_information_samples,
    load_routerbench,
)
from dukenet.market.routing import ThompsonExploration

REFERENCE_PRICE_SAT = 100_000
USD_TO_PRICE_SAT = 1e7
HISTORY = 100
SPLIT_SEED = 0
CHECKPOINTS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
"""Shares of the train prompts at which the served champion's test figures are recorded."""
TARGET_SUCCESS_SHARE = 0.98
TARGET_COST_SHARE = 0.40
PRINTED_COST_WEIGHTS: tuple[float, ...] = (
    0.0,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.06,
    0.07,
    0.08,
    0.09,
    0.1,
    0.12,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.0,
    5.0,
    1e3,
)
"""The ``cost_weight`` settings printed in the curve tables (a subset of ``COST_WEIGHT_GRID``)."""

COST_WEIGHT_GRID: tuple[float, ...] = tuple(
    sorted({*PRINTED_COST_WEIGHTS, *(float(f"{10 ** (k / 30):.4g}") for k in range(-90, 31))})
)
"""Serving-time ``cost_weight`` values swept for Duke's AIQ and the 98%/40% point: the printed
ones plus 30 per decade from 0.001 to 10 (the knob is continuous; a coarse grid would miss points
of the curve). 0 is quality at any price; 1e3 the cheapest agent nearly always."""

ORACLE_LAMBDAS: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 1e9)
"""Prices of one USD in success units swept for the oracle's curve."""


def reputation_multiplier(outcomes: deque[bool]) -> float:
    """Return 1.2 / 1.5 / 1.8 / 2.0 from the Beta(2, 2)-smoothed success rate of recent outcomes."""
    rate = (sum(outcomes) + 2.0) / (len(outcomes) + 4.0)
    if rate >= 0.95:
        return 2.0
    if rate >= 0.85:
        return 1.8
    if rate >= 0.70:
        return 1.5
    return 1.2


def prices_sat(base: np.ndarray, complexity: int, multipliers: np.ndarray) -> np.ndarray:
    """Integer prices in satoshis for one task, shape (n_agents,)."""
    return np.asarray(np.rint(base * complexity * multipliers), dtype=np.int64)


# ---------------------------------------------------------------------------- curves and AIQ
def hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-decreasing upper convex hull of (cost, quality) points, sorted by cost.

    Starts at the cheapest point (ties: the best quality) and keeps the upper hull up to the
    point of highest quality; points after it (dearer, not better) are dropped.
    """
    pts = sorted(set(points), key=lambda pq: (pq[0], -pq[1]))
    best = max(q for _, q in pts)
    cut = min(i for i, (_, q) in enumerate(pts) if q == best)
    upper: list[tuple[float, float]] = []
    for c, q in pts[: cut + 1]:
        if upper and c == upper[-1][0]:
            continue
        while len(upper) >= 2:
            (c1, q1), (c2, q2) = upper[-2], upper[-1]
            # Drop the middle point when it lies on or below the chord from c1 to c.
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                upper.pop()
            else:
                break
        upper.append((c, q))
    # Non-decreasing: a later hull point never below an earlier one.
    out: list[tuple[float, float]] = []
    for c, q in upper:
        if out and q < out[-1][1]:
            continue
        out.append((c, q))
    return out


def aiq(points: Sequence[tuple[float, float]], c_lo: float, c_hi: float) -> float:
    """AIQ: mean of the non-decreasing hull of ``points`` over costs ``[c_lo, c_hi]``.

    The hull is extended flat right of its dearest point and counts 0 left of its cheapest one.
    """
    h = hull(points)
    xs = np.array([c for c, _ in h], dtype=np.float64)
    ys = np.array([q for _, q in h], dtype=np.float64)
    grid = np.linspace(c_lo, c_hi, 4001)
    values = np.where(grid < xs[0], 0.0, np.interp(grid, xs, ys, right=ys[-1]))
    return float(np.trapezoid(values, grid) / (c_hi - c_lo))


def hull_at(points: Sequence[tuple[float, float]], cost: float) -> float:
    """Quality of the non-decreasing hull at ``cost`` (0 left of its cheapest point)."""
    h = hull(points)
    xs = np.array([c for c, _ in h])
    ys = np.array([q for _, q in h])
    return 0.0 if cost < xs[0] else float(np.interp(cost, xs, ys, right=ys[-1]))


def greedy_choices(
    p: np.ndarray, complexity: np.ndarray, base: np.ndarray, multipliers: np.ndarray, cw: float
) -> np.ndarray:
    """Greedy column per test prompt at ``cost_weight = cw`` (ties: lower price, then index)."""
    prices = np.rint(base[np.newaxis, :] * complexity[:, np.newaxis] * multipliers[np.newaxis, :])
    value = math.inf if cw <= 0 else REFERENCE_PRICE_SAT / cw
    key = -p if math.isinf(value) else -(p * value * complexity[:, np.newaxis] - prices)
    index = np.broadcast_to(np.arange(p.shape[1]), p.shape)
    order = np.lexsort((index, prices, key))
    return np.asarray(order[:, 0], dtype=np.int64)


@dataclass(frozen=True)
class Curve:
    """A policy family on test: one result per knob setting, plus its AIQ."""

    knobs: tuple[float, ...]
    results: tuple[PolicyResult, ...]
    aiq: float

    def points(self) -> list[tuple[float, float]]:
        """(USD per 1k, success) per knob setting."""
        return [(r.cost_per_1k_usd, r.success_rate) for r in self.results]

    def at(self, knob: float) -> PolicyResult:
        """The result at one knob setting."""
        return self.results[self.knobs.index(knob)]


@dataclass(frozen=True)
class Reference:
    """The test table's reference figures."""

    best_agent: str
    best: PolicyResult
    weak: PolicyResult
    single_points: list[tuple[float, float]]
    c_lo: float
    c_hi: float
    single_aiq: float
    oracle: Curve
    random: PolicyResult
    train_points: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    """Single agents' (USD/1k, success) on the train prompts (the online market's hull)."""

    def pgr(self, success: float) -> float:
        """RouteLLM's performance gap recovered between the cheapest and the best agent."""
        return (success - self.weak.success_rate) / (
            self.best.success_rate - self.weak.success_rate
        )

    def meets(self, result: PolicyResult) -> bool:
        """>= 98% of the best agent's success at <= 40% of its cost."""
        return (
            result.success_rate >= TARGET_SUCCESS_SHARE * self.best.success_rate
            and result.cost_per_1k_usd <= TARGET_COST_SHARE * self.best.cost_per_1k_usd
        )


def references(test: FullInfoTable) -> Reference:
    """Single agents, random and the oracle's curve on the test table."""
    singles = single_agent_results(test)
    best_agent, best = best_single_agent(test)
    weak = min(singles.values(), key=lambda r: (r.cost_per_1k_usd, -r.success_rate))
    points = [(r.cost_per_1k_usd, r.success_rate) for r in singles.values()]
    c_lo = min(c for c, _ in points)
    c_hi = max(c for c, _ in points)
    oracle_results = []
    for lam in ORACLE_LAMBDAS:
        score = test.success.astype(np.float64) - lam * test.cost_usd
        cols = np.lexsort((test.cost_usd, -score))[:, 0]
        oracle_results.append(evaluate_full_information([test.agents[j] for j in cols], test))
    oracle = Curve(
        ORACLE_LAMBDAS,
        tuple(oracle_results),
        aiq([(r.cost_per_1k_usd, r.success_rate) for r in oracle_results], c_lo, c_hi),
    )
    return Reference(
        best_agent=best_agent,
        best=best,
        weak=weak,
        single_points=points,
        c_lo=c_lo,
        c_hi=c_hi,
        single_aiq=aiq(points, c_lo, c_hi),
        oracle=oracle,
        random=random_routing_result(test, seed=0),
    )


def duke_curve(
    router: DukeRouter,
    x_test: sp.csr_matrix,
    test: FullInfoTable,
    base: np.ndarray,
    multipliers: np.ndarray,
    ref: Reference,
) -> Curve:
    """Duke's greedy policy on test at every ``COST_WEIGHT_GRID`` setting, and its AIQ."""
    p = router.predict_proba_features(x_test, test.agents)
    complexity = test.complexities()
    results = tuple(
        evaluate_full_information(
            [test.agents[j] for j in greedy_choices(p, complexity, base, multipliers, cw)], test
        )
        for cw in COST_WEIGHT_GRID
    )
    return Curve(
        COST_WEIGHT_GRID,
        results,
        aiq([(r.cost_per_1k_usd, r.success_rate) for r in results], ref.c_lo, ref.c_hi),
    )


# ---------------------------------------------------------------------------- the bandit loop
@dataclass(frozen=True)
class Exploration:
    """How the simulated market explores."""

    method: str
    thompson: ThompsonExploration
    epsilon: float
    top_k: int | None
    eps_floor: float

    def label(self) -> str:
        """Short description for the tables."""
        if self.method == "thompson":
            t = self.thompson
            return (
                f"thompson(floor={t.floor}, scale={t.scale}, cost_cap={t.cost_cap} "
                f"({t.cost_cap_kind}), "
                f"draws={t.n_draws})"
            )
        return f"epsilon(eps={self.epsilon}, top_k={self.top_k}, floor={self.eps_floor})"


@dataclass(frozen=True)
class GateSettings:
    """How ``--promotion policy`` compares a challenger with the champion.

    ``one_sided``: promote iff the one-sided 95% lower bound of the doubly robust difference is
    above 0 (False: the lower end of the two-sided 95% interval). ``reward_model``: the doubly
    robust reward model, ``own`` (each policy its own router's predictions), ``challenger`` or
    ``mean`` (of the two routers' predictions; one common model for both policies).
    ``weight_clip``: cap on the doubly robust importance weights (clipped DR; None: uncapped).
    ``rule`` and ``margin``: the product's gate (``evaluation.PromotionGate``: ``guardrail`` by
    default; ``superiority`` is the old rule).
    ``level``: the bootstrap's confidence level. ``knob_factors``: the policies are compared on
    their doubly robust value averaged, per decision, over the cost weight times each factor
    (``(1.0,)``: at the serving knob only, as the product). ``shadow_evidence``: a rejected
    challenger stays in shadow until the outcomes seen have doubled since its fit, and is then
    tested once more against the champion on the held-out decisions plus every decision logged
    since its fit (neither model trained on them); the newest challenger then takes the shadow.
    """

    one_sided: bool = False
    reward_model: str = "own"
    weight_clip: float | None = 5.0
    level: float = 0.95
    knob_factors: tuple[float, ...] = (1.0,)
    shadow_evidence: bool = False
    rule: str = PromotionGate().rule
    margin: float = PromotionGate().margin


@dataclass(frozen=True)
class VersionRow:
    """One retraining of the simulated loop."""

    version: int
    outcomes: int
    n_fit: int
    n_held_out: int
    fit_s: float
    brier_challenger: float
    brier_champion: float
    promoted: bool
    test: PolicyResult
    aiq: float


@dataclass(frozen=True)
class GateRecord:
    """One ``--promotion policy`` comparison of a challenger with a champion, and the truth.

    ``difference``, ``low``, ``high``: the gate's doubly robust estimate of V(challenger) -
    V(champion) on the held-out logged decisions and its bootstrap interval; ``true_gain``: the
    same difference measured with full information on the test prompts (mean normalised utility
    ``success - price / V`` of the two greedy policies at the serving knob).
    """

    outcomes: int
    difference: float
    low: float
    high: float
    promoted: bool
    true_gain: float


@dataclass(frozen=True)
class Simulation:
    """Everything one seeded run produced."""

    seed: int
    rows: list[VersionRow]
    final_curve: Curve | None
    last_curve: Curve | None
    online_success: float
    online_cost_per_1k_usd: float
    online_explored: float
    outcomes: list[OutcomeSample]
    gate_records: list[GateRecord]
    served_version: int
    """The version serving at the end (0: none was promoted)."""
    served: dict[float, tuple[float, float, float]]
    """Share of train prompts seen -> the served champion's (success, USD/1k at the serving knob,
    AIQ) on test then (missing: no champion yet)."""
    promotions: int
    greedy_share: float
    """Share of tasks routed to the champion's own greedy choice (0 before the first model)."""
    explore_cost_per_1k_usd: float
    """What exploring cost: mean recorded USD of the chosen agent minus the greedy agent's, per 1k
    tasks."""
    after_warmup: tuple[float, float]
    """Online success and USD/1k of the tasks after the warm-up."""


def simulate(
    seed: int,
    train: FullInfoTable,
    test: FullInfoTable,
    config: RouterConfig,
    ref: Reference,
    *,
    exploration: Exploration,
    cost_weight: float,
    retrain_every: int,
    promotion: str = "brier",
    gate: GateSettings | None = None,
    canary_share: float = 0.0,
    retrain_growth: float = 1.0,
    warmup: int = 300,
) -> Simulation:
    """Run the bandit learning loop once over the train prompts in a ``seed``-shuffled order.

    ``canary_share``: with Thompson exploration, that share of tasks is routed by the last
    rejected challenger (``policy.canary_mix``) until the next promotion. Retraining happens
    after ``retrain_every`` outcomes, or (``retrain_growth`` > 1) when the outcomes seen reach
    ``retrain_growth`` times those of the last fit (whichever is later), and always at the
    ``CHECKPOINTS`` shares of the train prompts. ``warmup``: the online figures after the first
    ``warmup`` tasks are reported separately (``Simulation.after_warmup``).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(train.n_prompts)
    gate = gate or GateSettings()
    shadow_evidence = promotion == "policy" and gate.shadow_evidence
    base = np.maximum(1.0, np.rint(train.mean_cost_usd() * USD_TO_PRICE_SAT))
    complexity_train = train.complexities()
    x_train = config.featurizer().transform(train.tasks())
    x_test = config.featurizer().transform(test.tasks())
    featurize = _cached_featurizer(train, x_train)
    history: list[deque[bool]] = [deque(maxlen=HISTORY) for _ in train.agents]
    outcomes: list[OutcomeSample] = []
    logged: list[LoggedDecision] = []
    champion: DukeRouter | None = None
    shadow: DukeRouter | None = None
    shadow_fit_at = shadow_version = served_version = 0
    rows: list[VersionRow] = []
    gate_records: list[GateRecord] = []
    final_curve: Curve | None = None
    last_curve: Curve | None = None
    online_success = online_cost = explored = 0.0
    greedy_routed = explore_cost = 0.0
    late_success: list[float] = []
    late_cost: list[float] = []
    checkpoints = {max(1, math.ceil(f * train.n_prompts)): f for f in CHECKPOINTS}
    served: dict[float, tuple[float, float, float]] = {}
    promotions = 0
    next_fit = retrain_every
    thompson = exploration.thompson
    for i in order:
        multipliers = np.array([reputation_multiplier(h) for h in history])
        complexity = int(complexity_train[i])
        prices = prices_sat(base, complexity, multipliers).astype(np.float64)
        value = math.inf if cost_weight <= 0 else REFERENCE_PRICE_SAT * complexity / cost_weight
        if champion is None:
            j = int(rng.integers(train.n_agents))
            propensity = 1.0 / train.n_agents
        elif exploration.method == "thompson":
            decision = _thompson(champion, x_train[i], train.agents, prices, value, thompson, rng)
            if shadow is not None and canary_share > 0:
                decision = canary_mix(
                    decision,
                    _thompson(shadow, x_train[i], train.agents, prices, value, thompson, rng),
                    canary_share,
                    rng,
                )
            j, propensity = decision.index, decision.propensity
            explored += decision.explored
        else:
            p = champion.predict_proba_features(x_train[i], train.agents)[0]
            decision = choose(
                p,
                prices,
                value,
                epsilon=exploration.epsilon,
                rng=rng,
                top_k=exploration.top_k,
                floor=exploration.eps_floor,
            )
            j, propensity = decision.index, decision.propensity
            explored += decision.explored
        success = bool(train.success[i, j])
        history[j].append(success)
        online_success += success
        online_cost += float(train.cost_usd[i, j])
        if champion is not None:
            greedy_j = decision.greedy_index
            greedy_routed += j == greedy_j
            explore_cost += float(train.cost_usd[i, j] - train.cost_usd[i, greedy_j])
        if len(outcomes) >= warmup:
            late_success.append(float(success))
            late_cost.append(float(train.cost_usd[i, j]))
        outcomes.append(
            OutcomeSample(
                task_id=train.task_ids[i],
                description=train.prompts[i],
                complexity=complexity,
                agent=train.agents[j],
                success=success,
            )
        )
        logged.append(
            LoggedDecision(
                description=train.prompts[i],
                complexity=complexity,
                candidates=train.agents,
                prices_sat=tuple(prices.tolist()),
                chosen=j,
                propensity=propensity,
                success=success,
                value_sat=value,
            )
        )
        seen = len(outcomes)
        if seen < next_fit and seen not in checkpoints:
            continue
        next_fit = max(seen + retrain_every, math.ceil(seen * retrain_growth))
        fit_rows, held_out = held_out_split(outcomes, seed=SPLIT_SEED)
        started = time.perf_counter()
        challenger = DukeRouter.fit(
            fit_rows,
            config,
            featurize=featurize,
            agent_prices=dict(zip(train.agents, base, strict=True)),
        )
        fit_s = time.perf_counter() - started
        y = np.array([s.success for s in held_out])
        x_held_out = featurize([TaskFeatures(s.description, s.complexity) for s in held_out])
        brier_challenger = _brier(challenger, held_out, x_held_out, y)
        brier_champion = math.nan if champion is None else _brier(champion, held_out, x_held_out, y)
        if promotion == "policy":
            promoted, verdict = _policy_gate(
                outcomes,
                logged,
                held_out,
                x_held_out,
                fit_rows,
                champion,
                challenger,
                gate,
            )
            if champion is not None and verdict is not None and verdict.low is not None:
                gain = _test_utility(challenger, x_test, test, base, history, cost_weight)
                gain -= _test_utility(champion, x_test, test, base, history, cost_weight)
                gate_records.append(
                    GateRecord(
                        len(outcomes),
                        float(verdict.difference or 0.0),
                        verdict.low,
                        float(verdict.high or 0.0),
                        promoted,
                        gain,
                    )
                )
        else:
            promoted = champion is None or _promote(
                promotion, held_out, x_held_out, y, champion, challenger
            )
        multipliers = np.array([reputation_multiplier(h) for h in history])
        if promoted:
            champion, shadow, served_version = challenger, None, len(rows) + 1
        elif champion is not None and shadow_evidence and shadow is not None:
            if len(outcomes) >= 2 * shadow_fit_at:
                held_ids = {s.task_id for s in held_out}
                rows_fresh = [
                    k for k, s in enumerate(outcomes) if k >= shadow_fit_at or s.task_id in held_ids
                ]
                fresh = [outcomes[k] for k in rows_fresh]
                x_fresh = featurize([TaskFeatures(s.description, s.complexity) for s in fresh])
                shadow_promoted, _ = _policy_gate(
                    fresh,
                    [logged[k] for k in rows_fresh],
                    fresh,
                    x_fresh,
                    fit_rows,
                    champion,
                    shadow,
                    gate,
                )
                if shadow_promoted:
                    champion, served_version = shadow, shadow_version
                    final_curve = duke_curve(champion, x_test, test, base, multipliers, ref)
                shadow, shadow_fit_at, shadow_version = challenger, len(outcomes), len(rows) + 1
        elif champion is not None:
            shadow = challenger  # the product's ``challenger`` alias: shadowed, and the canary
            shadow_fit_at, shadow_version = len(outcomes), len(rows) + 1
        curve = duke_curve(challenger, x_test, test, base, multipliers, ref)
        if promoted:
            final_curve = curve
            promotions += 1
        last_curve = curve
        if seen in checkpoints and final_curve is not None:
            at = final_curve.at(cost_weight)
            served[checkpoints[seen]] = (at.success_rate, at.cost_per_1k_usd, final_curve.aiq)
        rows.append(
            VersionRow(
                version=len(rows) + 1,
                outcomes=len(outcomes),
                n_fit=len(fit_rows),
                n_held_out=len(held_out),
                fit_s=fit_s,
                brier_challenger=brier_challenger,
                brier_champion=brier_champion,
                promoted=promoted,
                test=curve.at(cost_weight),
                aiq=curve.aiq,
            )
        )
    n = max(len(outcomes), 1)
    return Simulation(
        seed,
        rows,
        final_curve,
        last_curve,
        online_success / n,
        online_cost * 1000.0 / n,
        explored / n,
        outcomes,
        gate_records,
        served_version,
        served,
        promotions,
        greedy_routed / n,
        explore_cost * 1000.0 / n,
        (
            float(np.mean(late_success)) if late_success else math.nan,
            float(np.mean(late_cost)) * 1000.0 if late_cost else math.nan,
        ),
    )


def _test_utility(
    router: DukeRouter,
    x_test: sp.csr_matrix,
    test: FullInfoTable,
    base: np.ndarray,
    history: Sequence[deque[bool]],
    cost_weight: float,
) -> float:
    """Mean ``success - price / V`` of the router's greedy policy on test at ``cost_weight``."""
    multipliers = np.array([reputation_multiplier(h) for h in history])
    p = router.predict_proba_features(x_test, test.agents)
    cols = greedy_choices(p, test.complexities(), base, multipliers, cost_weight)
    success = test.success[np.arange(test.n_prompts), cols].astype(np.float64)
    if cost_weight <= 0:
        return float(success.mean())
    # price / V = base * complexity * multiplier / (100,000 * complexity / cost_weight)
    return float(np.mean(success - base[cols] * multipliers[cols] * cost_weight / 1e5))


def _thompson(
    router: DukeRouter,
    x: sp.csr_matrix,
    agents: Sequence[str],
    prices: np.ndarray,
    value: float,
    thompson: ThompsonExploration,
    rng: np.random.Generator,
) -> RoutingDecision:
    """One Thompson decision of ``router`` for the task in the single row ``x``."""
    mean, sd = router.predict_logit_features(x, agents)
    return thompson.choose(mean[0], sd[0], prices, value, rng)


def _promote(
    rule: str,
    held_out: list[OutcomeSample],
    x: sp.csr_matrix,
    y: np.ndarray,
    champion: DukeRouter,
    challenger: DukeRouter,
) -> bool:
    """Decide a promotion on the challenger's held-out rows.

    ``brier``: the challenger's Brier score is lower. ``not-worse``: the challenger (trained on more
    data) wins unless its Brier score is worse beyond noise (paired bootstrap, 95%). ``always``:
    the newest version wins.
    """
    if rule == "always":
        return True
    if not held_out:
        return rule == "not-worse"
    p_champion = _pair_probabilities(champion, held_out, x)
    p_challenger = _pair_probabilities(challenger, held_out, x)
    if rule == "brier":
        return bool(np.mean((p_challenger - y) ** 2) < np.mean((p_champion - y) ** 2))
    _, low, _ = brier_difference_interval(y, p_champion, p_challenger, n_boot=500)
    return low <= 0.0


def _policy_gate(
    outcomes: list[OutcomeSample],
    logged: list[LoggedDecision],
    held_out: list[OutcomeSample],
    x_held_out: sp.csr_matrix,
    fit_rows: list[OutcomeSample],
    champion: DukeRouter | None,
    challenger: DukeRouter,
    gate: GateSettings,
) -> tuple[bool, PromotionDecision | None]:
    """The product's promotion gate on the held-out logged decisions (one per outcome here;
    ``held_out`` and ``x_held_out`` list them in the order of ``outcomes``): the decision and,
    when there were decisions to judge, the gate's record of it."""
    held_ids = {s.task_id for s in held_out}
    decisions = [logged[k] for k, s in enumerate(outcomes) if s.task_id in held_ids]
    if not decisions:
        return champion is None, None
    agents = list(decisions[0].candidates)
    p_new = challenger.predict_proba_features(x_held_out, agents)
    if champion is None:
        y = np.array([d.success for d in decisions], dtype=np.float64)
        own = np.array([d.chosen for d in decisions], dtype=np.int64)
        prior = np.full(
            len(decisions), np.mean([float(s.success) for s in fit_rows]) if fit_rows else 0.5
        )
        decision = policy_promotion_decision(
            greedy_policy_evaluation(decisions, list(p_new)).utility,
            None,
            y_true=y,
            p_challenger=p_new[np.arange(len(decisions)), own],
            p_prior=prior,
        )
        return decision.promote, decision
    p_old = champion.predict_proba_features(x_held_out, agents)
    reward = {"own": None, "challenger": p_new, "mean": (p_new + p_old) / 2.0}[gate.reward_model]
    rows_reward = None if reward is None else list(reward)
    clip = gate.weight_clip
    new_terms, old_terms = [], []
    for factor in gate.knob_factors:
        at_knob = [dataclasses.replace(d, value_sat=d.value_sat / factor) for d in decisions]
        new_terms.append(
            greedy_policy_evaluation(
                at_knob, list(p_new), p_reward=rows_reward, weight_clip=clip
            ).utility.dr_terms()
        )
        old_terms.append(
            greedy_policy_evaluation(
                at_knob, list(p_old), p_reward=rows_reward, weight_clip=clip
            ).utility.dr_terms()
        )
    decision = policy_promotion_decision(
        _averaged(new_terms),
        _averaged(old_terms),
        one_sided=gate.one_sided,
        level=gate.level,
        rule=gate.rule,
        margin=gate.margin,
    )
    return decision.promote, decision


def _averaged(terms: list[np.ndarray]) -> PolicyTerms:
    """Per-row doubly robust terms averaged over knob settings, as PolicyTerms whose DR is that."""
    mean = np.mean(terms, axis=0)
    ones = np.ones_like(mean)
    return PolicyTerms(mean, ones, ones, np.zeros_like(mean), np.zeros_like(mean))


def _gate_report(records: Sequence[GateRecord]) -> str:
    """One line on the gate's power: how its promotions compare with the truth on test."""
    gain = np.array([r.true_gain for r in records])
    promoted = np.array([r.promoted for r in records])
    better = gain > 0
    half = np.median([(r.high - r.low) / 2.0 for r in records])
    return (
        f"{len(records)} champion/challenger comparisons, {int(better.sum())} challengers truly "
        f"better on test (median true gain {np.median(gain):+.4f}); {int(promoted.sum())} "
        f"promoted, {int((promoted & better).sum())} of them truly better "
        f"(mean true gain {gain[promoted].mean() if promoted.any() else math.nan:+.4f}); median "
        f"interval half-width {half:.4f}"
    )


def _pair_probabilities(
    router: DukeRouter, samples: list[OutcomeSample], x: sp.csr_matrix
) -> np.ndarray:
    """P(success) of each sample's own agent on its task, shape (n,)."""
    agents = sorted({s.agent for s in samples})
    column = {a: k for k, a in enumerate(agents)}
    p = router.predict_proba_features(x, agents)
    return np.asarray(p[np.arange(len(samples)), [column[s.agent] for s in samples]])


def _cached_featurizer(
    table: FullInfoTable, x: sp.csr_matrix
) -> Callable[[Sequence[TaskFeatures]], sp.csr_matrix]:
    """Featurize the table's prompts by row lookup (same output as the featurizer, much faster)."""
    row_of = {text: i for i, text in enumerate(table.prompts)}
    complexity = table.complexities()

    def featurize(tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        rows = [row_of[task.description] for task in tasks]
        if any(complexity[r] != task.complexity for r, task in zip(rows, tasks, strict=True)):
            raise ValueError("complexity differs from the table's")
        return sp.csr_matrix(x[rows])

    return featurize


def _brier(
    router: DukeRouter, samples: list[OutcomeSample], x: sp.csr_matrix, y: np.ndarray
) -> float:
    """Brier score of ``router`` on the (task, agent) pairs of ``samples`` (features ``x``)."""
    if not samples:
        return math.nan
    return classifier_metrics(y, _pair_probabilities(router, samples, x))["brier"]


CATEGORY_LAMBDAS: tuple[float, ...] = (
    0.0,
    *(float(f"{10 ** (k / 20):.4g}") for k in range(0, 101)),
)
"""Prices of one USD in success units swept for the category router's curve (0, then 1 to 1e5)."""


def category_curve(train: FullInfoTable, test: FullInfoTable, ref: Reference) -> Curve:
    """The best a router that knows only each prompt's task family can do, as a reference.

    Per family (``categories``: arc-challenge, mbpp, winogrande) and price ``lambda`` of one USD,
    every test prompt of the family goes to the agent maximising its *train* success rate minus
    ``lambda`` times its mean train cost (full information on train; ties: cheaper). This is the
    routing a perfect family classifier with exact per-family success rates would do; a learned
    router beats it only by telling prompts of one family apart.
    """
    families = sorted(set(train.categories))
    train_family = np.array(train.categories)
    test_family = np.array(test.categories)
    results = []
    for lam in CATEGORY_LAMBDAS:
        chosen = np.zeros(test.n_prompts, dtype=np.int64)
        for family in families:
            rows = train_family == family
            score = train.success[rows].mean(axis=0) - lam * train.cost_usd[rows].mean(axis=0)
            best = int(np.lexsort((train.cost_usd[rows].mean(axis=0), -score))[0])
            chosen[test_family == family] = best
        results.append(evaluate_full_information([test.agents[j] for j in chosen], test))
    return Curve(
        CATEGORY_LAMBDAS,
        tuple(results),
        aiq([(r.cost_per_1k_usd, r.success_rate) for r in results], ref.c_lo, ref.c_hi),
    )


def full_information_curve(
    train: FullInfoTable, test: FullInfoTable, config: RouterConfig, ref: Reference, seed: int
) -> tuple[Curve, float, dict[str, float]]:
    """Fit Duke on every (train prompt, agent) outcome and sweep its greedy policy on test.

    Multipliers come from each agent's outcomes on the last 100 prompts of the seeded order.
    """
    order = np.random.default_rng(seed).permutation(train.n_prompts)
    last = order[-HISTORY:]
    multipliers = np.array(
        [
            reputation_multiplier(deque(train.success[last, j].tolist()))
            for j in range(train.n_agents)
        ]
    )
    base = np.maximum(1.0, np.rint(train.mean_cost_usd() * USD_TO_PRICE_SAT))
    started = time.perf_counter()
    router = DukeRouter.fit(
        full_information_samples(train),
        config,
        agent_prices=dict(zip(train.agents, base, strict=True)),
    )
    fit_s = time.perf_counter() - started
    x_test = router.featurize(test.tasks())
    curve = duke_curve(router, x_test, test, base, multipliers, ref)
    p = router.predict_proba_features(x_test, test.agents)
    metrics = classifier_metrics(test.success.ravel(), p.ravel())
    return curve, fit_s, metrics


def knn_curve(train: FullInfoTable, test: FullInfoTable, ref: Reference, *, k: int = 20) -> Curve:
    """A RouteLLM-style full-information reference router: TF-IDF kNN (Ong et al. 2024 route with
    similarity-weighted rankings and matrix factorisation; this is the simplest member of that
    family, as in RouterBench's KNN router, Hu et al. 2024).

    Each test prompt's P(success | agent) is the Beta(1, 1)-smoothed success rate of the agent on
    the ``k`` train prompts nearest by cosine similarity of TF-IDF word 1-2-grams (every agent's
    outcome on them known), routed greedily at every ``COST_WEIGHT_GRID`` setting with the
    train-table base prices and multiplier 1.2 (a new agent's).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(train.prompts)
    x_test = vectorizer.transform(test.prompts)
    neighbours = NearestNeighbors(n_neighbors=min(k, train.n_prompts), metric="cosine")
    _, index = neighbours.fit(x_train).kneighbors(x_test)
    success = train.success.astype(np.float64)[index]  # (n_test, k, n_agents)
    p = (success.sum(axis=1) + 1.0) / (index.shape[1] + 2.0)
    base = np.maximum(1.0, np.rint(train.mean_cost_usd() * USD_TO_PRICE_SAT))
    multipliers = np.full(test.n_agents, 1.2)
    complexity = test.complexities()
    results = tuple(
        evaluate_full_information(
            [test.agents[j] for j in greedy_choices(p, complexity, base, multipliers, cw)], test
        )
        for cw in COST_WEIGHT_GRID
    )
    return Curve(
        COST_WEIGHT_GRID,
        results,
        aiq([(r.cost_per_1k_usd, r.success_rate) for r in results], ref.c_lo, ref.c_hi),
    )


def load_tables(
    dataset: str, *, max_train: int | None = None, seed: int = 0
) -> tuple[str, FullInfoTable, FullInfoTable]:
    """Return ``(label, train, test)`` for ``dataset``: ``routerbench`` (its own split),
    ``mmlu-pro`` (the packaged 7,000-question subset, ``learning.mmlu_pro``, seeded 80/20 split
    by subject) or a path to any long-format recorded-outcomes file (``replay.dataset``; split 80/20
    by ``mmlu_pro.split_rows`` on its categories). ``max_train`` keeps a seeded random subset of
    the train prompts (the test side is never cut)."""
    from dukenet.learning.mmlu_pro import load_mmlu_pro, split_rows

    if dataset == "routerbench":
        label, train, test = "RouterBench", load_routerbench("train"), load_routerbench("test")
    elif dataset == "mmlu-pro":
        label, train, test = "MMLU-Pro", load_mmlu_pro("train"), load_mmlu_pro("test")
    else:
        from dukenet.learning.routerbench import table_from_outcomes
        from dukenet.replay.dataset import read_outcomes

        table = table_from_outcomes(read_outcomes(Path(dataset)))
        train_rows, test_rows = split_rows(table.categories, seed=0)
        label, train, test = Path(dataset).name, table.subset(train_rows), table.subset(test_rows)
    if max_train is not None and max_train < train.n_prompts:
        rows = np.sort(np.random.default_rng(seed).permutation(train.n_prompts)[:max_train])
        train = train.subset(rows)
    return label, train, test


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t ``level`` interval of the mean of ``values`` (NaNs
    dropped; half-width nan with fewer than two values)."""
    from scipy.stats import t as student_t

    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    half = float(student_t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean()), half


def _pm(values: Sequence[float], digits: int = 3) -> str:
    mean, half = t_interval(values)
    return f"{mean:.{digits}f}+-{half:.{digits}f}"


def summary_payload(
    label: str,
    runs: Sequence[Simulation],
    ref: Reference,
    reference_rows: Sequence[tuple[str, Curve | None, PolicyResult]],
    cost_weight: float,
) -> dict[str, object]:
    """The per-seed figures and the references of one run, as JSON (``--json``; ``--combine``
    prints several such files as one table)."""
    return {
        "label": label,
        "cost_weight": cost_weight,
        "hull_aiq": ref.single_aiq,
        "best_agent": ref.best_agent,
        "best": [ref.best.success_rate, ref.best.cost_per_1k_usd],
        "weak_success": ref.weak.success_rate,
        "train_points": ref.train_points,
        "references": [
            [name, point.success_rate, point.cost_per_1k_usd, None if c is None else c.aiq]
            for name, c, point in reference_rows
        ],
        "seeds": [
            {
                "seed": sim.seed,
                "served": {str(f): list(v) for f, v in sim.served.items()},
                "aiq": sim.final_curve.aiq if sim.final_curve is not None else None,
                "newest_aiq": sim.last_curve.aiq if sim.last_curve is not None else None,
                "promotions": sim.promotions,
                "versions": len(sim.rows),
                "greedy_share": sim.greedy_share,
                "explore_cost_per_1k_usd": sim.explore_cost_per_1k_usd,
                "after_warmup": list(sim.after_warmup),
            }
            for sim in runs
        ],
    }


def print_interval_summary(payloads: Sequence[dict[str, Any]]) -> None:
    """The issue's table: bandit Duke's learning curve and figures with 95% t-intervals across
    the seeds of ``payloads`` (``summary_payload``, all of one dataset and settings), beside the
    references (fixed test prompts, so no interval)."""
    head = payloads[0]
    seeds = [seed for p in payloads for seed in p["seeds"]]
    n, cw, hull_aiq = len(seeds), head["cost_weight"], head["hull_aiq"]
    best_success, best_cost = head["best"]
    weak = head["weak_success"]

    def pgr(x: float) -> float:
        return float((x - weak) / (best_success - weak))

    nan3 = [math.nan] * 3
    print(f"\n{head['label']}: bandit Duke over {n} seeds, 95% t-intervals across seeds (cw={cw})")
    print(
        "  served champion on the test prompts (full information) by share of train prompts seen:"
    )
    print(f"    {'seen':>6s}  {'success':>13s}  {'$/1k':>13s}  {'AIQ':>15s}  champion yet")
    for f in CHECKPOINTS:
        have = [s["served"][str(f)] for s in seeds if str(f) in s["served"]]
        print(
            f"    {f:6.0%}  {_pm([h[0] for h in have]):>13s}  {_pm([h[1] for h in have], 2):>13s}"
            f"  {_pm([h[2] for h in have], 4):>15s}  {len(have)}/{n}"
        )
    aiqs = [math.nan if s["aiq"] is None else s["aiq"] for s in seeds]
    newest = [math.nan if s["newest_aiq"] is None else s["newest_aiq"] for s in seeds]
    first = [s["served"].get(str(CHECKPOINTS[0]), nan3)[2] for s in seeds]
    rise = [a - b for a, b in zip(aiqs, first, strict=True)]
    print(
        f"  AIQ {_pm(aiqs, 4)} (hull {hull_aiq:.4f}; above it on "
        f"{sum(a > hull_aiq for a in aiqs)}/{n}); APGR {_pm([pgr(a) for a in aiqs])}; "
        f"newest version's AIQ {_pm(newest, 4)}; AIQ rise from {CHECKPOINTS[0]:.0%} to 100% "
        f"{_pm(rise, 4)} (above 0 on {sum(r > 0 for r in rise)}/{n})"
    )
    late = [s["after_warmup"] for s in seeds]
    points = [tuple(pt) for pt in head["train_points"]]
    hull_late = [hull_at(points, c) for _, c in late] if points else []
    print(
        f"  promotions {_pm([float(s['promotions']) for s in seeds], 1)} of "
        f"{_pm([float(s['versions']) for s in seeds], 1)} versions; greedy share "
        f"{_pm([s['greedy_share'] for s in seeds])}; exploration cost "
        f"${_pm([s['explore_cost_per_1k_usd'] for s in seeds], 3)}/1k; online after warm-up "
        f"{_pm([x for x, _ in late])} at ${_pm([c for _, c in late], 2)}/1k"
        + (
            f", the train single agents' hull there {_pm(hull_late)} (market above it on "
            f"{sum(x > h for (x, _), h in zip(late, hull_late, strict=True))}/{n})"
            if hull_late
            else ""
        )
    )
    at_end = [s["served"].get("1.0") for s in seeds]
    meets = sum(a is not None and a[0] >= best_success and a[1] <= 0.25 * best_cost for a in at_end)
    print(
        f"  target: champion at 100% >= {head['best_agent']}'s success {best_success:.3f} at "
        f"<= 25% of its ${best_cost:.2f}/1k: {meets}/{n} seeds at cw={cw}"
    )
    for name, success, cost, curve_aiq in head["references"]:
        extra = (
            f"  AIQ {curve_aiq:.4f}  APGR {pgr(curve_aiq):6.3f}" if curve_aiq is not None else ""
        )
        print(f"    {name:40s} {success:7.3f} {cost:8.2f}{extra}")


# ---------------------------------------------------------------------------- printing
def _fmt(result: PolicyResult) -> str:
    return f"{result.success_rate:7.3f} {result.cost_per_1k_usd:8.2f}"


def _top_choices(result: PolicyResult, k: int = 3) -> str:
    top = sorted(result.choices.items(), key=lambda item: -item[1])[:k]
    return ", ".join(f"{agent.split('/')[-1]}:{count}" for agent, count in top)


def _best_meeting(curve: Curve, ref: Reference) -> tuple[float, PolicyResult] | None:
    """The cheapest knob setting meeting the 98% / 40% target, if any."""
    meeting = [(k, r) for k, r in zip(curve.knobs, curve.results, strict=True) if ref.meets(r)]
    return min(meeting, key=lambda kr: kr[1].cost_per_1k_usd) if meeting else None


def _curve_line(name: str, curve: Curve, ref: Reference, cost_weight: float) -> str:
    at = curve.at(cost_weight)
    meeting = _best_meeting(curve, ref)
    where = f"cw={meeting[0]:g}: {_fmt(meeting[1])}" if meeting is not None else "no knob setting"
    return (
        f"  {name:34s} {_fmt(at)}  PGR {ref.pgr(at.success_rate):6.3f}  AIQ {curve.aiq:.4f}  "
        f"APGR {ref.pgr(curve.aiq):6.3f}  98%/40% target: {where}"
    )


def _print_curve(curve: Curve) -> None:
    print("    cost_weight  success   $/1k  top choices")
    for knob, result in zip(curve.knobs, curve.results, strict=True):
        if knob not in PRINTED_COST_WEIGHTS:
            continue
        print(f"    {knob:11g} {_fmt(result)}  {_top_choices(result)}")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the simulations and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--exploration", choices=["thompson", "epsilon", "both"], default="both")
    default = ThompsonExploration()
    parser.add_argument("--floor", type=float, default=default.floor, help="Thompson floor")
    parser.add_argument("--scale", type=float, default=default.scale, help="posterior sd scale")
    parser.add_argument(
        "--cost-cap",
        type=float,
        default=default.cost_cap,
        help="explored price <= (1 + cap) x greedy price; negative: no cap",
    )
    parser.add_argument(
        "--cost-cap-kind",
        choices=list(COST_CAP_KINDS),
        default=default.cost_cap_kind,
        help="price: cap every explored price; expected: cap the decision's expected price",
    )
    parser.add_argument("--draws", type=int, default=THOMPSON_DRAWS)
    parser.add_argument(
        "--canary-share",
        type=float,
        default=0.0,
        help="share of tasks the rejected challenger routes until the next promotion (Thompson)",
    )
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--top-k", type=int, default=4, help="explore among the k best (0: all)")
    parser.add_argument("--eps-floor", type=float, default=0.05, help="epsilon's uniform floor")
    parser.add_argument("--cost-weight", type=float, default=0.1)
    parser.add_argument("--retrain-every", type=int, default=100)
    parser.add_argument(
        "--promotion",
        choices=["policy", "brier", "not-worse", "always"],
        default="policy",
        help="policy: the product's off-policy gate (evaluation.policy_promotion_decision); "
        "brier: lower held-out Brier wins; not-worse: challenger unless worse beyond noise; "
        "always: the newest version",
    )
    parser.add_argument(
        "--gate-test",
        choices=["one-sided", "two-sided"],
        default="two-sided",
        help="policy gate: one-sided 95%% lower bound > 0, or the two-sided interval's",
    )
    parser.add_argument(
        "--reward-model",
        choices=["own", "challenger", "mean"],
        default="own",
        help="policy gate's doubly robust reward model: each router its own, or one common one",
    )
    parser.add_argument(
        "--weight-clip",
        type=float,
        default=5.0,
        help="policy gate: cap on the doubly robust importance weights (negative: none)",
    )
    parser.add_argument(
        "--gate-knobs",
        type=float,
        nargs="+",
        default=[1.0],
        help="policy gate: average the policy value over these multiples of the cost weight",
    )
    parser.add_argument(
        "--gate-level",
        type=float,
        default=0.95,
        help="policy gate: confidence level of the bootstrap bound",
    )
    parser.add_argument(
        "--shadow-evidence",
        action="store_true",
        help="policy gate: re-test the shadowed challenger on fresh decisions when data doubles",
    )
    parser.add_argument(
        "--dataset",
        default="routerbench",
        help="routerbench, mmlu-pro (the packaged subset) or a long-format outcomes file",
    )
    parser.add_argument("--max-train", type=int, default=None, help="seeded subset of train")
    parser.add_argument(
        "--retrain-growth",
        type=float,
        default=1.0,
        help="retrain when outcomes reach this x those of the last fit (1: every --retrain-every)",
    )
    gate_default = PromotionGate()
    product = Settings()
    parser.add_argument(
        "--gate-rule",
        choices=["guardrail", "non-inferiority", "superiority"],
        default=gate_default.rule,
    )
    parser.add_argument("--gate-margin", type=float, default=gate_default.margin)
    parser.add_argument(
        "--budget",
        type=float,
        default=-1.0 if product.exploration_budget is None else product.exploration_budget,
        help="Thompson exploration budget: most probability on non-greedy agents (negative: none)",
    )
    parser.add_argument(
        "--thompson-top-k",
        type=int,
        default=product.thompson_top_k or 0,
        help="only the k best agents by posterior-mean utility are drawn (0: all)",
    )
    parser.add_argument("--knn-k", type=int, default=20, help="neighbours of the kNN reference")
    parser.add_argument("--json", help="write the per-seed figures and references to this file")
    parser.add_argument(
        "--skip-full-information",
        action="store_true",
        help="do not fit the full-information Duke reference (slow on MMLU-Pro)",
    )
    parser.add_argument(
        "--combine", nargs="+", help="print the interval table of several --json files and exit"
    )
    parser.add_argument("--config", default="{}", help='RouterConfig overrides, JSON: {"C": 1.0}')
    parser.add_argument("--quiet", action="store_true", help="summary lines only")
    args = parser.parse_args(argv)
    if args.combine:
        print_interval_summary([json.loads(Path(f).read_text()) for f in args.combine])
        return 0
    config = RouterConfig(**json.loads(args.config))
    if args.cost_weight not in COST_WEIGHT_GRID:
        parser.error(f"--cost-weight must be one of {COST_WEIGHT_GRID}")
    thompson = ThompsonExploration(
        floor=args.floor,
        scale=args.scale,
        cost_cap=None if args.cost_cap is None or args.cost_cap < 0 else args.cost_cap,
        cost_cap_kind=args.cost_cap_kind,
        n_draws=args.draws,
        budget=None if args.budget < 0 else args.budget,
        top_k=args.thompson_top_k or None,
    )
    gate = GateSettings(
        args.gate_test == "one-sided",
        args.reward_model,
        None if args.weight_clip < 0 else args.weight_clip,
        args.gate_level,
        tuple(args.gate_knobs),
        args.shadow_evidence,
        rule=args.gate_rule,
        margin=args.gate_margin,
    )
    methods = ["thompson", "epsilon"] if args.exploration == "both" else [args.exploration]
    explorations = [
        Exploration(m, thompson, args.epsilon, args.top_k or None, args.eps_floor) for m in methods
    ]

    started = time.perf_counter()
    label, train, test = load_tables(args.dataset, max_train=args.max_train)
    print(
        f"{label}: {train.n_prompts} train / {test.n_prompts} test prompts "
        f"x {train.n_agents} agents"
    )
    print(f"config: {asdict(config)}")
    print(
        f"cost_weight={args.cost_weight} retrain_every={args.retrain_every} "
        f"promotion={args.promotion} ({gate}) threads: "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )

    ref = dataclasses.replace(
        references(test),
        train_points=[
            (r.cost_per_1k_usd, r.success_rate) for r in single_agent_results(train).values()
        ],
    )
    print("\nreferences on test (success rate, USD per 1k prompts)")
    for agent, result in sorted(
        single_agent_results(test).items(), key=lambda kv: -kv[1].success_rate
    ):
        print(f"  {agent:36s} {_fmt(result)}")
    print(f"  {'random (uniform)':36s} {_fmt(ref.random)}")
    print(f"  {'oracle (cheapest correct)':36s} {_fmt(ref.oracle.at(0.0))}")
    print(
        f"AIQ over ${ref.c_lo:.3f}..${ref.c_hi:.2f}/1k: single agents' hull "
        f"{ref.single_aiq:.4f}, oracle {ref.oracle.aiq:.4f}, random "
        f"{hull_at([(ref.random.cost_per_1k_usd, ref.random.success_rate)], ref.c_hi):.4f} "
        f"(one point)"
    )
    print(
        f"target: AIQ > {ref.single_aiq:.4f}; success >= "
        f"{TARGET_SUCCESS_SHARE * ref.best.success_rate:.3f} "
        f"({TARGET_SUCCESS_SHARE:.0%} of {ref.best_agent}) at <= "
        f"${TARGET_COST_SHARE * ref.best.cost_per_1k_usd:.2f}/1k ({TARGET_COST_SHARE:.0%})"
    )
    needed = math.ceil(TARGET_SUCCESS_SHARE * ref.best.success_rate * test.n_prompts - 1e-9)
    p_target = needed / test.n_prompts
    noise = math.sqrt(p_target * (1 - p_target) / test.n_prompts)
    print(
        f"  i.e. {needed} of {test.n_prompts} test prompts solved; the test set's sampling "
        f"noise on a success rate near it is +-{noise:.4f} (one binomial standard error, "
        f"{noise * test.n_prompts:.1f} prompts)"
    )
    category = category_curve(train, test, ref)

    full: Curve | None = None
    if not args.skip_full_information:
        full, full_fit_s, full_metrics = full_information_curve(
            train, test, config, ref, args.seeds[0]
        )
        print(
            f"\nfull-information Duke (all {train.n_prompts} x {train.n_agents} train outcomes): "
            f"fit {full_fit_s:.2f}s brier {full_metrics['brier']:.4f} "
            f"auc {full_metrics['roc_auc']:.3f}"
        )
        if not args.quiet:
            _print_curve(full)

    summary: dict[str, list[tuple[int, Curve | None, Simulation]]] = {}
    for exploration in explorations:
        print(f"\n=== bandit Duke, {exploration.label()}")
        runs = summary.setdefault(exploration.method, [])
        for n_run, seed in enumerate(args.seeds):
            sim = simulate(
                seed,
                train,
                test,
                config,
                ref,
                exploration=exploration,
                cost_weight=args.cost_weight,
                retrain_every=args.retrain_every,
                promotion=args.promotion,
                gate=gate,
                canary_share=args.canary_share,
                retrain_growth=args.retrain_growth,
            )
            runs.append((seed, sim.final_curve, sim))
            if n_run == 0 and not args.quiet:
                print(f"seed {seed}: learning curve (greedy policy of each version on test)")
                print(
                    "   v  outcomes  fit_s  brier_new brier_champ promoted "
                    "success   $/1k     AIQ  top choices"
                )
                for row in sim.rows:
                    print(
                        f"  {row.version:2d}  {row.outcomes:8d} {row.fit_s:6.2f}  "
                        f"{row.brier_challenger:9.4f} {row.brier_champion:11.4f}"
                        f" {'yes' if row.promoted else 'no':>8s} {_fmt(row.test)}  "
                        f"{row.aiq:.4f}  {_top_choices(row.test)}"
                    )
            if sim.final_curve is None:
                print(f"seed {seed}: no version promoted")
                continue
            curve = sim.final_curve
            meeting = _best_meeting(curve, ref)
            at = curve.at(args.cost_weight)
            fit_total = sum(row.fit_s for row in sim.rows)
            share_success = at.success_rate / ref.best.success_rate
            share_cost = at.cost_per_1k_usd / ref.best.cost_per_1k_usd
            print(
                f"seed {seed}: last promoted v{sim.served_version} "
                f"at cw={args.cost_weight}: {_fmt(at)} "
                f"({share_success:.1%} of best's success, {share_cost:.1%} of its cost) "
                f"AIQ {curve.aiq:.4f} (hull {ref.single_aiq:.4f}: "
                f"{'above' if curve.aiq > ref.single_aiq else 'NOT above'}) APGR "
                f"{ref.pgr(curve.aiq):.3f}; 98%/40%: "
                + (
                    f"MET at cw={meeting[0]:g} ({_fmt(meeting[1])})"
                    if meeting is not None
                    else "NOT MET"
                )
                + f"; online {sim.online_success:.3f} ${sim.online_cost_per_1k_usd:.2f}/1k "
                f"explored {sim.online_explored:.1%}; fits {fit_total:.1f}s"
            )
            if n_run == 0 and not args.quiet:
                _print_curve(curve)

    print(f"\nsummary on test (mean over seeds {args.seeds}; cw={args.cost_weight})")
    print(f"  {'policy':34s} success   $/1k  PGR at cw       AIQ   APGR   98%/40% target")
    for agent, result in sorted(
        single_agent_results(test).items(), key=lambda kv: -kv[1].success_rate
    )[:4]:
        print(f"  {agent:34s} {_fmt(result)}  PGR {ref.pgr(result.success_rate):6.3f}")
    print(
        f"  {'single agents (convex hull)':34s} {'':16s}  {'':10s}  AIQ {ref.single_aiq:.4f}  "
        f"APGR {ref.pgr(ref.single_aiq):6.3f}"
    )
    print(f"  {'random':34s} {_fmt(ref.random)}  PGR {ref.pgr(ref.random.success_rate):6.3f}")
    print(_curve_line("oracle (lambda sweep)", ref.oracle, ref, 0.0))
    print(_curve_line("category routing (train full info)", category, ref, 0.0))
    if full is not None:
        print(_curve_line("full-information Duke", full, ref, args.cost_weight))
    for method, runs in summary.items():
        curves = [c for _, c, _ in runs if c is not None]
        if not curves:
            print(f"  bandit Duke ({method}): no version promoted")
            continue
        success = float(np.mean([c.at(args.cost_weight).success_rate for c in curves]))
        cost = float(np.mean([c.at(args.cost_weight).cost_per_1k_usd for c in curves]))
        mean_aiq = float(np.mean([c.aiq for c in curves]))
        above = sum(c.aiq > ref.single_aiq for c in curves)
        met = sum(_best_meeting(c, ref) is not None for c in curves)
        met_default = sum(ref.meets(c.at(args.cost_weight)) for c in curves)
        newest = [s.last_curve for _, _, s in runs if s.last_curve is not None]
        newest_aiq = float(np.mean([c.aiq for c in newest]))
        newest_met = sum(_best_meeting(c, ref) is not None for c in newest)
        online = np.mean([s.online_success for _, _, s in runs])
        online_cost = np.mean([s.online_cost_per_1k_usd for _, _, s in runs])
        print(
            f"  {'bandit Duke (' + method + ')':34s} {success:7.3f} {cost:8.2f}  "
            f"PGR {ref.pgr(success):6.3f}  AIQ {mean_aiq:.4f}  APGR {ref.pgr(mean_aiq):6.3f}  "
            f"AIQ above hull {above}/{len(runs)} seeds; 98%/40% at some knob {met}/{len(runs)}, "
            f"at cw={args.cost_weight} {met_default}/{len(runs)}; online while learning "
            f"{online:.3f} ${online_cost:.2f}/1k; newest version (no gate): AIQ {newest_aiq:.4f}, "
            f"98%/40% at some knob {newest_met}/{len(runs)}"
        )
    for method, runs in summary.items():
        records = [r for _, _, sim in runs for r in sim.gate_records]
        if records:
            print(f"  gate ({method}): {_gate_report(records)}")
    knn = knn_curve(train, test, ref, k=args.knn_k)
    cheap_good = max(
        single_agent_results(test).items(),
        key=lambda kv: kv[1].success_rate - 10.0 * kv[1].cost_per_1k_usd / ref.c_hi,
    )
    reference_rows: list[tuple[str, Curve | None, PolicyResult]] = [
        *([("full-information Duke", full, full.at(args.cost_weight))] if full else []),
        (f"TF-IDF kNN (k={args.knn_k}, full information)", knn, knn.at(args.cost_weight)),
        (f"best single agent: {ref.best_agent}", None, ref.best),
        (f"cheap good agent: {cheap_good[0]}", None, cheap_good[1]),
        ("random", None, ref.random),
        ("oracle (cheapest correct)", ref.oracle, ref.oracle.at(0.0)),
    ]
    payloads = [
        summary_payload(
            f"{label}, {method}", [sim for _, _, sim in runs], ref, reference_rows, args.cost_weight
        )
        for method, runs in summary.items()
    ]
    for payload in payloads:
        print_interval_summary([payload])
    if args.json:
        Path(args.json).write_text(json.dumps(payloads[0] if len(payloads) == 1 else payloads))
    print(f"\nwall time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
