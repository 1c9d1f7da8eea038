"""Offline simulation of DukeNET's learning loop on RouterBench; prints figures, asserts nothing.

The loop, as the marketplace runs it:

1. RouterBench train prompts arrive in a seeded random order, each with a complexity
   (``complexity_of``).
2. Every agent (one per model) asks
   ``price_sat = base_price_sat * complexity * reputation multiplier``, with
   ``base_price_sat = max(1, round(mean recorded cost USD * 1e7))`` and a multiplier of 1.2 / 1.5 /
   1.8 / 2.0 for a Beta(2, 2)-smoothed success rate over the agent's last 100 outcomes below 0.70 /
   >= 0.70 / >= 0.85 / >= 0.95.
3. The champion router (uniform random before there is one) routes with ``policy.choose``
   (``value_sat = 100,000 * complexity / cost_weight``; exploration ``epsilon`` among the
   ``top_k`` best candidates plus a uniform ``floor``, as the demo). Only the chosen agent's
   recorded outcome is seen (bandit feedback).
4. Every 100 outcomes a challenger is fitted on the train side of ``held_out_split`` of all outcomes
   seen, and promoted when its Brier score on its held-out rows beats the champion's on them.
5. Each version's greedy policy is scored on the RouterBench *test* prompts with full information.

Run: ``python benchmarks/router_quality.py`` (seeds 0, 1, 2; about 45 s on one core); options:
``--seeds``, ``--epsilon`` (default 0.3), ``--top-k`` (4; 0 for all), ``--floor`` (0.05),
``--cost-weight`` (0.1), ``--config '{"C": 1.0}'``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from dukenet.learning.evaluation import (
    PolicyResult,
    best_single_agent,
    brier_difference_interval,
    classifier_metrics,
    evaluate_full_information,
    held_out_split,
    oracle_result,
    random_routing_result,
    single_agent_results,
)
from dukenet.learning.features import TaskFeatures
from dukenet.learning.policy import choose
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.routerbench import (
    FullInfoTable,
    full_information_samples,
    load_routerbench,
)

REFERENCE_PRICE_SAT = 100_000
USD_TO_PRICE_SAT = 1e7
HISTORY = 100
SPLIT_SEED = 0
TARGET_SUCCESS_SHARE = 0.97
TARGET_COST_SHARE = 0.50
RANDOM_MARGIN = 0.05


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


def greedy_result(
    router: DukeRouter,
    x_test: sp.csr_matrix,
    table: FullInfoTable,
    complexity: np.ndarray,
    base: np.ndarray,
    multipliers: np.ndarray,
    cost_weight: float,
) -> PolicyResult:
    """Route every test prompt greedily (epsilon = 0) at the given prices and score it."""
    p = router.predict_proba_features(x_test, table.agents)
    value = REFERENCE_PRICE_SAT * complexity[:, np.newaxis] / cost_weight
    prices = np.rint(base[np.newaxis, :] * complexity[:, np.newaxis] * multipliers[np.newaxis, :])
    utility = p * value - prices
    # Ties: lower price, then lower index (as policy.choose).
    order = np.lexsort(
        (np.broadcast_to(np.arange(table.n_agents), utility.shape), prices, -utility)
    )
    chosen = [table.agents[int(j)] for j in order[:, 0]]
    return evaluate_full_information(chosen, table)


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


@dataclass(frozen=True)
class Simulation:
    """Everything one seeded run produced."""

    seed: int
    rows: list[VersionRow]
    final: PolicyResult | None
    online_success: float
    online_cost_per_1k_usd: float
    outcomes: list[OutcomeSample]


def simulate(
    seed: int,
    train: FullInfoTable,
    test: FullInfoTable,
    config: RouterConfig,
    *,
    epsilon: float,
    cost_weight: float,
    retrain_every: int,
    promotion: str = "brier",
    top_k: int | None = None,
    floor: float = 0.0,
) -> Simulation:
    """Run the bandit learning loop once over the train prompts in a ``seed``-shuffled order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(train.n_prompts)
    base = np.maximum(1.0, np.rint(train.mean_cost_usd() * USD_TO_PRICE_SAT))
    complexity_train = train.complexities()
    complexity_test = test.complexities()
    x_train = config.featurizer().transform(train.tasks())
    x_test = config.featurizer().transform(test.tasks())
    featurize = _cached_featurizer(train, x_train)
    history: list[deque[bool]] = [deque(maxlen=HISTORY) for _ in train.agents]
    outcomes: list[OutcomeSample] = []
    champion: DukeRouter | None = None
    rows: list[VersionRow] = []
    final: PolicyResult | None = None
    online_success = 0.0
    online_cost = 0.0
    for i in order:
        multipliers = np.array([reputation_multiplier(h) for h in history])
        complexity = int(complexity_train[i])
        prices = prices_sat(base, complexity, multipliers)
        if champion is None:
            j = int(rng.integers(train.n_agents))
        else:
            p = champion.predict_proba_features(x_train[i], train.agents)[0]
            value = REFERENCE_PRICE_SAT * complexity / cost_weight
            j = choose(p, prices, value, epsilon=epsilon, rng=rng, top_k=top_k, floor=floor).index
        success = bool(train.success[i, j])
        history[j].append(success)
        online_success += success
        online_cost += float(train.cost_usd[i, j])
        outcomes.append(
            OutcomeSample(
                task_id=train.task_ids[i],
                description=train.prompts[i],
                complexity=complexity,
                agent=train.agents[j],
                success=success,
            )
        )
        if len(outcomes) % retrain_every and len(outcomes) != train.n_prompts:
            continue
        fit_rows, held_out = held_out_split(outcomes, seed=SPLIT_SEED)
        started = time.perf_counter()
        challenger = DukeRouter.fit(fit_rows, config, featurize=featurize)
        fit_s = time.perf_counter() - started
        y = np.array([s.success for s in held_out])
        x_held_out = featurize([TaskFeatures(s.description, s.complexity) for s in held_out])
        brier_challenger = _brier(challenger, held_out, x_held_out, y)
        brier_champion = math.nan if champion is None else _brier(champion, held_out, x_held_out, y)
        promoted = champion is None or _promote(
            promotion, held_out, x_held_out, y, champion, challenger
        )
        if promoted:
            champion = challenger
        multipliers = np.array([reputation_multiplier(h) for h in history])
        result = greedy_result(
            challenger, x_test, test, complexity_test, base, multipliers, cost_weight
        )
        if promoted:
            final = result
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
                test=result,
            )
        )
    n = max(len(outcomes), 1)
    return Simulation(seed, rows, final, online_success / n, online_cost * 1000.0 / n, outcomes)


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
    data) wins unless its Brier score is worse beyond noise (paired bootstrap, 95%).
    """
    if not held_out:
        return rule == "not-worse"
    p_champion = _pair_probabilities(champion, held_out, x)
    p_challenger = _pair_probabilities(challenger, held_out, x)
    if rule == "brier":
        return bool(np.mean((p_challenger - y) ** 2) < np.mean((p_champion - y) ** 2))
    _, low, _ = brier_difference_interval(y, p_champion, p_challenger, n_boot=500)
    return low <= 0.0


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


def full_information_result(
    train: FullInfoTable,
    test: FullInfoTable,
    config: RouterConfig,
    cost_weight: float,
    seed: int,
) -> tuple[PolicyResult, float, dict[str, float]]:
    """Fit Duke on every (train prompt, agent) outcome and score its greedy policy on test.

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
    router = DukeRouter.fit(full_information_samples(train), config)
    fit_s = time.perf_counter() - started
    x_test = router.featurize(test.tasks())
    result = greedy_result(
        router, x_test, test, test.complexities(), base, multipliers, cost_weight
    )
    p = router.predict_proba_features(x_test, test.agents)
    metrics = classifier_metrics(test.success.ravel(), p.ravel())
    return result, fit_s, metrics


def _fmt(result: PolicyResult) -> str:
    return f"{result.success_rate:7.3f} {result.cost_per_1k_usd:8.2f}"


def _top_choices(result: PolicyResult, k: int = 3) -> str:
    top = sorted(result.choices.items(), key=lambda item: -item[1])[:k]
    return ", ".join(f"{agent.split('/')[-1]}:{count}" for agent, count in top)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the simulations and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--cost-weight", type=float, default=0.1)
    parser.add_argument("--top-k", type=int, default=4, help="explore among the k best (0: all)")
    parser.add_argument("--floor", type=float, default=0.05, help="uniform exploration floor")
    parser.add_argument("--retrain-every", type=int, default=100)
    parser.add_argument(
        "--promotion",
        choices=["brier", "not-worse"],
        default="brier",
        help="brier: lower held-out Brier wins; not-worse: challenger unless worse beyond noise",
    )
    parser.add_argument("--config", default="{}", help='RouterConfig overrides, JSON: {"C": 1.0}')
    parser.add_argument("--quiet", action="store_true", help="summary lines only")
    args = parser.parse_args(argv)
    config = RouterConfig(**json.loads(args.config))

    started = time.perf_counter()
    train = load_routerbench("train")
    test = load_routerbench("test")
    print(
        f"RouterBench: {train.n_prompts} train / {test.n_prompts} test prompts "
        f"x {train.n_agents} agents"
    )
    print(
        f"blank correctness cells: {int(train.missing.sum())} train, {int(test.missing.sum())} test"
    )
    print(f"config: {asdict(config)}")
    print(
        f"epsilon={args.epsilon} cost_weight={args.cost_weight} "
        f"retrain_every={args.retrain_every} promotion={args.promotion}"
    )
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    best_agent, best = best_single_agent(test)
    random_result = random_routing_result(test, seed=0)
    oracle = oracle_result(test)
    target_success = TARGET_SUCCESS_SHARE * best.success_rate
    target_cost = TARGET_COST_SHARE * best.cost_per_1k_usd
    print("\nreferences on test (success rate, USD per 1k prompts)")
    for agent, result in sorted(
        single_agent_results(test).items(), key=lambda kv: -kv[1].success_rate
    ):
        print(f"  {agent:36s} {_fmt(result)}")
    print(f"  {'random (uniform)':36s} {_fmt(random_result)}")
    print(f"  {'oracle (cheapest correct)':36s} {_fmt(oracle)}")
    print(
        f"target: success >= {target_success:.3f} ({TARGET_SUCCESS_SHARE:.0%} of {best_agent}), "
        f"cost <= ${target_cost:.2f}/1k ({TARGET_COST_SHARE:.0%}), "
        f"success >= random + {RANDOM_MARGIN}"
    )

    full, full_fit_s, full_metrics = full_information_result(
        train, test, config, args.cost_weight, args.seeds[0]
    )
    print(
        f"\nfull-information Duke (all {train.n_prompts} x {train.n_agents} train outcomes): "
        f"{_fmt(full)}  fit {full_fit_s:.2f}s  brier {full_metrics['brier']:.4f} "
        f"auc {full_metrics['roc_auc']:.3f}  [{_top_choices(full)}]"
    )

    verdicts: list[bool] = []
    for n_run, seed in enumerate(args.seeds):
        sim = simulate(
            seed,
            train,
            test,
            config,
            epsilon=args.epsilon,
            cost_weight=args.cost_weight,
            retrain_every=args.retrain_every,
            promotion=args.promotion,
            top_k=args.top_k or None,
            floor=args.floor,
        )
        if n_run == 0 and not args.quiet:
            print(f"\nseed {seed}: versions (greedy policy of each version on test)")
            print(
                "   v  outcomes  fit/held  fit_s  brier_new brier_champ promoted "
                "success  $/1k  top choices"
            )
            for row in sim.rows:
                print(
                    f"  {row.version:2d}  {row.outcomes:8d}  {row.n_fit:4d}/{row.n_held_out:<4d}"
                    f" {row.fit_s:5.2f}  {row.brier_challenger:9.4f} {row.brier_champion:11.4f}"
                    f" {'yes' if row.promoted else 'no':>8s} {_fmt(row.test)}  "
                    f"{_top_choices(row.test)}"
                )
        final = sim.final
        if final is None:
            verdicts.append(False)
            print(f"seed {seed}: no version promoted")
            continue
        met = (
            final.success_rate >= target_success
            and final.cost_per_1k_usd <= target_cost
            and final.success_rate >= random_result.success_rate + RANDOM_MARGIN
        )
        verdicts.append(met)
        fit_times = [row.fit_s for row in sim.rows]
        print(
            f"seed {seed}: last promoted version {_fmt(final)}  "
            f"({final.success_rate / best.success_rate:.1%} of best's success, "
            f"{final.cost_per_1k_usd / best.cost_per_1k_usd:.1%} of its cost)  "
            f"target {'MET' if met else 'NOT MET'}; "
            f"online during learning {sim.online_success:.3f} "
            f"${sim.online_cost_per_1k_usd:.2f}/1k; fit max {max(fit_times):.2f}s "
            f"total {sum(fit_times):.1f}s"
        )
    print(
        f"\ntarget met on {sum(verdicts)}/{len(verdicts)} seeds; "
        f"wall time {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
