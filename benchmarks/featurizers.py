"""Which featurizer should Duke use? Decided on RouterBench's held-out test prompts; prints figures.

Duke is fitted with full information (every model's outcome on every *train* prompt, 2,225 x 11)
once per featurizer setting, then scored on the 953 *test* prompts (never seen in fitting):

- classifier metrics over every (test prompt, model) pair: ROC-AUC, Brier score, log loss;
- the routed policy: each test prompt goes to ``argmax_j P(success_j) - knob * cost_j / max cost``
  (mean train cost per call of model ``j``); success rate and USD per 1,000 prompts at knob 0
  (quality only), 0.1, 0.3 and 1, next to the best single model and the oracle;
- featurization time of the train prompts and fit time (one core unless BLAS threads are allowed).

With ``--tune-trials N`` an Optuna study (``dukenet.learning.tuning.tune``, TPE seeded, 3-fold
cross-validated log loss on the train prompts only) runs first in a temporary migrated SQLite
database, and its best configuration is scored as one more row.

Run: ``OMP_NUM_THREADS=1 python benchmarks/featurizers.py`` (about 3 minutes on one free core);
``--only hashing embedding-256`` to pick rows; ``--tune-trials 20`` to add a tuned row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from dukenet.learning.embedding import embeddings_available
from dukenet.learning.evaluation import (
    PolicyResult,
    best_single_agent,
    classifier_metrics,
    evaluate_full_information,
    oracle_result,
)
from dukenet.learning.features import TaskFeatures
from dukenet.learning.router import DukeRouter, RouterConfig
from dukenet.learning.routerbench import FullInfoTable, full_information_samples, load_routerbench

KNOBS = (0.0, 0.1, 0.3, 1.0)
"""Cost knob values: 0 routes on predicted success alone, larger values favour cheaper models."""

SETTINGS: dict[str, RouterConfig] = {
    "hashing": RouterConfig(),
    "hashing+char": RouterConfig(char_ngrams=True),
    "embedding-256": RouterConfig(features="embedding", embedding_dim=256),
    "embedding-64": RouterConfig(features="embedding", embedding_dim=64),
    "embedding-256-pc128": RouterConfig(
        features="embedding", embedding_dim=256, agent_n_features=128
    ),
}
"""Rows of the comparison: the default, its char n-gram variant and the embedding featurizer."""


@dataclass(frozen=True)
class Row:
    """Figures of one featurizer setting on the test prompts."""

    name: str
    featurize_s: float
    fit_s: float
    auc: float
    brier: float
    log_loss: float
    routed: dict[float, PolicyResult]
    prompt_log_loss: np.ndarray
    """(n_test_prompts,) mean log loss over the models of each test prompt (for paired CIs)."""


def evaluate(name: str, config: RouterConfig, train: FullInfoTable, test: FullInfoTable) -> Row:
    """Fit on all train outcomes with ``config`` and score on the test prompts."""
    featurizer = config.featurizer()
    started = time.perf_counter()
    x_train = featurizer.transform(train.tasks())
    featurize_s = time.perf_counter() - started
    row_of = {(t.description, t.complexity): i for i, t in enumerate(train.tasks())}

    def cached(tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        return sp.csr_matrix(x_train[[row_of[(t.description, t.complexity)] for t in tasks]])

    started = time.perf_counter()
    router = DukeRouter.fit(full_information_samples(train), config, featurize=cached)
    fit_s = time.perf_counter() - started
    p = router.predict_proba(test.tasks(), test.agents)
    metrics = classifier_metrics(test.success.ravel(), p.ravel())
    y = test.success.astype(np.float64)
    prompt_log_loss = -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p), axis=1)
    cost = train.mean_cost_usd()
    routed = {}
    for knob in KNOBS:
        utility = p - knob * cost[np.newaxis, :] / cost.max()
        chosen = [test.agents[int(j)] for j in np.argmax(utility, axis=1)]
        routed[knob] = evaluate_full_information(chosen, test)
    return Row(
        name=name,
        featurize_s=featurize_s,
        fit_s=fit_s,
        auc=metrics["roc_auc"],
        brier=metrics["brier"],
        log_loss=metrics["log_loss"],
        routed=routed,
        prompt_log_loss=prompt_log_loss,
    )


def paired_interval(
    base: np.ndarray, other: np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``other - base`` over test prompts and its 95% paired bootstrap interval."""
    diff = other - base
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def tuned_config(train: FullInfoTable, n_trials: int, seed: int) -> RouterConfig:
    """Run a study on the train prompts (3-fold CV log loss) in a temporary SQLite database."""
    from dukenet.learning import tuning
    from dukenet.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tune.db'}"
        upgrade(url)
        started = time.perf_counter()
        result = tuning.tune(
            full_information_samples(train),
            database_url=url,
            n_trials=n_trials,
            seed=seed,
            n_folds=3,
        )
    default = "-" if result.default_value is None else f"{result.default_value:.4f}"
    print(
        f"tuning: {result.n_trials} trials in {time.perf_counter() - started:.0f}s on "
        f"{result.n_outcomes} train-side outcomes; best CV log loss {result.best_value:.4f} "
        f"(default config {default})"
    )
    print(f"tuned params: {json.dumps(result.best_params)}")
    return result.best_config


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, fit each featurizer setting and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="rows to run")
    parser.add_argument("--tune-trials", type=int, default=0, help="add a tuned row (N trials)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning study")
    args = parser.parse_args(argv)

    train, test = load_routerbench("train"), load_routerbench("test")
    print(
        f"RouterBench: {train.n_prompts} train / {test.n_prompts} test prompts x "
        f"{train.n_agents} models; full-information fit on train, scored on test"
    )
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    best_name, best = best_single_agent(test)
    oracle = oracle_result(test)
    print(
        f"best single model {best_name}: success {best.success_rate:.3f} "
        f"${best.cost_per_1k_usd:.2f}/1k; oracle {oracle.success_rate:.3f} "
        f"${oracle.cost_per_1k_usd:.2f}/1k"
    )
    names = args.only or list(SETTINGS)
    configs = {name: SETTINGS[name] for name in names}
    if not embeddings_available():
        skipped = [n for n, c in configs.items() if c.features == "embedding"]
        configs = {n: c for n, c in configs.items() if c.features != "embedding"}
        if skipped:
            print(f"skipped (install the 'embeddings' extra): {', '.join(skipped)}")
    if args.tune_trials:
        configs["tuned"] = tuned_config(train, args.tune_trials, args.seed)
        print(f"tuned config: {json.dumps(asdict(configs['tuned']))}")

    knob_head = "  ".join(f"knob {k:<4} succ  $/1k " for k in KNOBS)
    head = f"{'featurizer':20s} {'feat_s':>6} {'fit_s':>6} {'auc':>6} {'brier':>6} {'logloss':>7}"
    print(f"\n{head}  {knob_head}")
    rows: list[Row] = []
    for name, config in configs.items():
        row = evaluate(name, replace(config), train, test)
        rows.append(row)
        routed = "  ".join(
            f"{'':9s} {r.success_rate:5.3f} {r.cost_per_1k_usd:6.2f}" for r in row.routed.values()
        )
        print(
            f"{row.name:20s} {row.featurize_s:6.1f} {row.fit_s:6.1f} {row.auc:6.4f} "
            f"{row.brier:6.4f} {row.log_loss:7.4f}  {routed}",
            flush=True,
        )
    if len(rows) > 1:
        print(f"\nlog loss minus {rows[0].name}'s, per test prompt: mean [95% paired bootstrap]")
        for row in rows[1:]:
            mean, low, high = paired_interval(rows[0].prompt_log_loss, row.prompt_log_loss)
            verdict = "better" if high < 0 else "worse" if low > 0 else "no difference"
            print(f"  {row.name:20s} {mean:+.4f} [{low:+.4f}, {high:+.4f}]  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
